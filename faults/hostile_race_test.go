//go:build race

package faults

// raceEnabled reports whether the race detector is on: its shadow memory
// makes resident-set figures meaningless.
const raceEnabled = true
