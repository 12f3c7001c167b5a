package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Summary describes a sample.
type Summary struct {
	N      int     `json:"n"`
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
}

// summarize returns the summary of xs; the zero Summary for none.
func summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	return Summary{
		N:      len(s),
		Min:    s[0],
		Median: percentile(s, 50),
		P90:    percentile(s, 90),
		P99:    percentile(s, 99),
		Max:    s[len(s)-1],
		Mean:   sum / float64(len(s)),
	}
}

// percentile returns the p-th percentile (0..100) of sorted, interpolating
// linearly between the two closest ranks (Hyndman & Fan type 7, the
// default of NumPy and R): rank h = (n-1)·p/100. It returns NaN for an
// empty sample.
func percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	p = min(max(p, 0), 100)
	h := float64(n-1) * p / 100
	lo := int(math.Floor(h))
	hi := int(math.Ceil(h))
	return sorted[lo] + (h-float64(lo))*(sorted[hi]-sorted[lo])
}

// median returns the median of xs (which it does not reorder).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return percentile(s, 50)
}

// ratio returns x/base, or nil when base is zero or either is not finite
// (JSON has no NaN).
func ratio(x, base float64) *float64 {
	if base == 0 || math.IsNaN(x) || math.IsNaN(base) || math.IsInf(x, 0) || math.IsInf(base, 0) {
		return nil
	}
	r := x / base
	return &r
}

// rotate returns xs rotated left by k, so that round k of an A/B/C
// comparison starts with a different case each time.
func rotate[T any](xs []T, k int) []T {
	if len(xs) == 0 {
		return nil
	}
	k %= len(xs)
	return append(slices.Clone(xs[k:]), xs[:k]...)
}

// byteSize is a flag.Value for a byte count with an optional unit:
// K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024 (as head -c reads
// them); KB, MB, GB, TB are powers of 1000.
type byteSize int64

func (b *byteSize) String() string { return formatBytes(int64(*b)) }

func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

var errBadSize = errors.New("want a positive byte count such as 1073741824, 64MiB or 1GiB")

// parseSize parses a byte count for byteSize.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("size %q: %w", s, errBadSize)
	}
	mult := map[string]float64{
		"": 1, "B": 1,
		"K": 1 << 10, "KiB": 1 << 10, "KB": 1e3,
		"M": 1 << 20, "MiB": 1 << 20, "MB": 1e6,
		"G": 1 << 30, "GiB": 1 << 30, "GB": 1e9,
		"T": 1 << 40, "TiB": 1 << 40, "TB": 1e12,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q: %w", s, unit, errBadSize)
	}
	n := v * mult
	if n != math.Trunc(n) || n > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q: %w", s, errBadSize)
	}
	return int64(n), nil
}

// formatBytes renders n with the largest binary unit that divides it, or
// in bytes.
func formatBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
