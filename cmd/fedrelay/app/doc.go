// Package app wires fedrelay's packages into one running relay: it builds
// the policy, domain table, dialback secret, certificate store, resolver,
// router and S2S server from a validated configuration, opens the listeners
// of both faces, the internal DNS responder and the admin endpoint, and
// reloads what may change at run time. It holds no protocol logic. The
// fedrelay command and the whole-relay tests in test/ both use it.
package app
