package audit

import "unicode/utf8"

// MaxFieldLen is the most bytes of one attacker-supplied string (a typed
// target name, a login, a command line, an error that quotes either) that
// reach an audit event or a log line. A person controls these strings, and
// without a cap one connection could write megabytes per event.
const MaxFieldLen = 256

// clipMarker ends a string that Clip cut, so that a reader of the log
// knows it saw a prefix.
const clipMarker = "…[truncated]"

// Clip returns s if it is at most MaxFieldLen bytes, and otherwise its
// first bytes, cut at a rune boundary, followed by a marker saying it was
// cut. The result is never longer than MaxFieldLen plus the marker.
func Clip(s string) string {
	if len(s) <= MaxFieldLen {
		return s
	}
	cut := MaxFieldLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + clipMarker
}
