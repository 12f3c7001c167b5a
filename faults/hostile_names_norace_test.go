//go:build !race

package faults

// raceBuild reports whether the race detector is on: its shadow memory
// makes resident-set figures meaningless.
const raceBuild = false
