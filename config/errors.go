package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem found in a configuration file. Load and Parse return
// every problem they find, each an *Error, joined with errors.Join; use
// errors.As to reach the first one, or Unwrap() []error for all of them.
type Error struct {
	// File is the path given to Load or Parse, or "config" if it was empty.
	File string
	// Line is the 1-based line of the offending key or value; 0 if unknown.
	Line int
	// Key is the key path, such as "users[1].keys[0]"; empty for the file
	// as a whole.
	Key string
	// Msg says what is wrong, in lower case.
	Msg string
}

// Error returns the problem as one line: "FILE:LINE: KEY: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// problems collects the errors of one Parse. Keys whose value could not be
// decoded are remembered in bad, so that validation does not pile a second,
// misleading error (such as "required") on a key that already has one.
type problems struct {
	file  string
	errs  []*Error
	warns []*Error
	bad   map[string]bool
	lines map[string]int
}

// add records a problem at an explicit line; the same problem reached
// twice (through YAML aliases) is recorded once.
func (p *problems) add(line int, key, format string, args ...any) {
	e := &Error{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
	if slices.ContainsFunc(p.errs, func(o *Error) bool { return *o == *e }) {
		return
	}
	p.errs = append(p.errs, e)
}

// decodeError records a problem with the value of key and marks key bad.
func (p *problems) decodeError(line int, key, format string, args ...any) {
	p.add(line, key, format, args...)
	p.bad[key] = true
}

// errorf records a validation problem with key, at the line of key or, if
// key is absent from the file, of its closest enclosing key. It does nothing
// if key or an enclosing key already failed to decode.
func (p *problems) errorf(key, format string, args ...any) {
	for k := key; ; k = parentKey(k) {
		if p.bad[k] {
			return
		}
		if k == "" {
			break
		}
	}
	p.add(p.lineOf(key), key, format, args...)
}

// warnf records a warning about key, at the line of key or of its closest
// enclosing key: the config still loads.
func (p *problems) warnf(key, format string, args ...any) {
	p.warns = append(p.warns, &Error{File: p.file, Line: p.lineOf(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// lineOf returns the line of key, or of its closest enclosing key present in
// the file; 1 if none is.
func (p *problems) lineOf(key string) int {
	for k := key; ; k = parentKey(k) {
		if l, ok := p.lines[k]; ok && l > 0 {
			return l
		}
		if k == "" {
			return 1
		}
	}
}

// err returns the problems sorted by line (stably, so problems on one line
// keep the order they were found in) and joined, or nil if there are none.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b *Error) int { return a.Line - b.Line })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// parentKey returns the key path enclosing key: "users[1].keys" for
// "users[1].keys[0]", "users[1]" for "users[1].keys", "" for "users".
func parentKey(key string) string {
	i := strings.LastIndexAny(key, ".[")
	if i < 0 {
		return ""
	}
	return key[:i]
}

// joinKey returns the path of child key name inside key path parent.
//
// A name holding control characters (a line break in a quoted YAML key) is
// quoted, so that an error stays on one line.
func joinKey(parent, name string) string {
	if strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		name = strconv.Quote(name)
	}
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// indexKey returns the path of element i of the list at key path parent.
func indexKey(parent string, i int) string {
	return fmt.Sprintf("%s[%d]", parent, i)
}
