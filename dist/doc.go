// Package dist holds what operators install besides the binary, and no Go
// code of its own: build.sh (the release build: static, version and commit
// by -ldflags -X), docker/Dockerfile (a scratch image built with build.sh),
// and systemd/ (the hardened fedrelay.service, Type=notify, and the
// sysusers.d entry of its user). Its tests build with build.sh and check
// that the Dockerfile, the unit and the documentation agree with it; the
// unit is checked by systemd-analyze verify and security where available.
// docs/operators.md explains how they are used.
package dist
