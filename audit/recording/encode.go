package recording

import (
	"unicode/utf8"
)

// stream is one direction of a session (output or input) as the recorder
// sees it: a UTF-8 sequence that a chunk ends in the middle of is carried
// over to the stream's next chunk, so that a character split by the copy
// loop's buffer is recorded whole rather than as two U+FFFD.
type stream struct {
	carry [utf8.UTFMax]byte
	n     int // bytes held in carry, at most utf8.UTFMax-1
}

// appendData appends the JSON-escaped text of the carried bytes followed by
// p to dst, and keeps an incomplete sequence at the end for the next call.
// It does not retain p.
func (s *stream) appendData(dst, p []byte) []byte {
	if s.n > 0 {
		// Complete the carried sequence with the fewest bytes of p that
		// make it a full rune (valid or not), and no more: escaping more
		// than that here could cut a second sequence in two.
		var head [2 * utf8.UTFMax]byte
		h := append(head[:0], s.carry[:s.n]...)
		k := 0
		for k < len(p) && !utf8.FullRune(h) {
			h = append(h, p[k])
			k++
		}
		if !utf8.FullRune(h) {
			s.n = copy(s.carry[:], h)
			return dst
		}
		dst = appendEscaped(dst, h)
		s.n = 0
		p = p[k:]
	}
	t := incompleteTail(p)
	dst = appendEscaped(dst, p[:len(p)-t])
	s.n = copy(s.carry[:], p[len(p)-t:])
	return dst
}

// appendRest appends what the stream still carries, an incomplete sequence
// that will never be completed, as U+FFFD, and empties the carry.
func (s *stream) appendRest(dst []byte) []byte {
	dst = appendEscaped(dst, s.carry[:s.n])
	s.n = 0
	return dst
}

// incompleteTail returns the length of the incomplete but so far valid
// UTF-8 sequence p ends with, 0 if p ends with a complete rune or with
// bytes that no continuation could make valid.
func incompleteTail(p []byte) int {
	for i := len(p) - 1; i >= 0 && i >= len(p)-(utf8.UTFMax-1); i-- {
		if utf8.RuneStart(p[i]) {
			if utf8.FullRune(p[i:]) {
				return 0
			}
			return len(p) - i
		}
	}
	return 0
}

const hexDigits = "0123456789abcdef"

// appendEscaped appends p to dst as the inside of a JSON string (RFC 8259
// §7): quote, backslash and control characters escaped, valid UTF-8 copied
// as is, and every byte that is not part of a valid sequence replaced with
// U+FFFD, so that the result is always valid UTF-8 and valid JSON.
func appendEscaped(dst, p []byte) []byte {
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, p[i:i+size]...)
		}
		i += size
	}
	return dst
}
