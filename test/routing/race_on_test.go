//go:build race

package routing_test

// raceEnabled: the race detector makes sync.Pool drop what it is given at
// random, so allocation counts are not the relay's.
const raceEnabled = true
