package config

import (
	"errors"
	"fmt"
	"strings"

	"filippo.io/age"
)

// checkRecordingsRecipients checks audit.recordings_recipients: each an age
// X25519 recipient, and a folder to write the encrypted recordings to.
func (c *checker) checkRecordingsRecipients(a *Audit) {
	if len(a.RecordingsRecipients) == 0 {
		return
	}
	if a.Recordings == "" {
		c.errorf("audit.recordings_recipients", "needs audit.recordings: encrypted recordings are written there")
	}
	for i, s := range a.RecordingsRecipients {
		// age's error quotes the value, which may be a pasted secret
		// key: say what is wrong without it.
		key := indexKey("audit.recordings_recipients", i)
		switch _, err := age.ParseX25519Recipient(s); {
		case err == nil:
		case strings.HasPrefix(strings.ToUpper(s), "AGE-SECRET-KEY-"):
			c.errorf(key, "is an age identity (a secret key), not a recipient: give its recipient, from age-keygen -y, and keep the identity off the bastion")
		default:
			c.errorf(key, "%q is not an age X25519 recipient (age1…, as age-keygen -y prints)", clipRecipient(s))
		}
	}
}

// RecordingRecipients parses audit.recordings_recipients, which
// validation has checked; nil when recordings are not encrypted.
func (a *Audit) RecordingRecipients() ([]age.Recipient, error) {
	var rs []age.Recipient
	for i, s := range a.RecordingsRecipients {
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("parsing audit.recordings_recipients[%d]: %w", i, errNotRecipient)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// errNotRecipient is what RecordingRecipients reports for a value that is
// not a recipient, without the value.
var errNotRecipient = errors.New("not an age X25519 recipient")

// clipRecipient shortens a bad recipient for an error message.
func clipRecipient(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
