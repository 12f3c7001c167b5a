package main

import (
	"path/filepath"
	"strconv"

	"filippo.io/age"
)

// recordUsage is the help of --record.
const recordUsage = `record every session through the bastion, exec and input included, to compare the bastion's CPU per GiB with recording off (the default), "plain" (asciicast) or "age" (encrypted with age to a throwaway recipient). The recordings stay in the run's temporary folder: about 6 bytes per byte of the bulk transfer's zeros (each is written as \u0000), so use a small --bytes such as 64MiB`

// validRecord reports whether mode is a value of --record.
func validRecord(mode string) bool { return mode == "" || mode == "plain" || mode == "age" }

// recordingAudit returns the audit keys --record adds to the bastion's
// config, after its log: a recordings folder, exec and input recording, no
// size cap, and for "age" a recipient whose identity is thrown away.
func (c bastionConfig) recordingAudit() string {
	if c.Record == "" {
		return ""
	}
	s := ", recordings: " + strconv.Quote(filepath.Join(c.Dir, "recordings")) + ", record_exec: true, record_input: true, max_recording_size: 0"
	if c.Record == "age" {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			panic(err) // crypto/rand does not fail
		}
		s += ", recordings_recipients: [" + strconv.Quote(id.Recipient().String()) + "]"
	}
	return s
}
