package main

import (
	"math"
	"slices"
	"testing"
)

func TestPercentile(t *testing.T) {
	sorted := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		p, want float64
	}{
		{0, 1},
		{50, 5.5},
		{90, 9.1},
		{99, 9.91},
		{100, 10},
		{-5, 1},
		{150, 10},
	}
	for _, tc := range tests {
		if got := percentile(sorted, tc.p); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("p%v: got %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile([]float64{42}, 99); got != 42 {
		t.Errorf("one sample: got %v, want 42", got)
	}
	if got := percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("no samples: got %v, want NaN", got)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"odd", []float64{9, 1, 5}, 5},
		{"even", []float64{4, 1, 3, 2}, 2.5},
		{"one", []float64{7}, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			if got := median(tc.in); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if !slices.Equal(in, tc.in) {
				t.Errorf("median reordered its input: got %v, want %v", tc.in, in)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	got := summarize([]float64{3, 1, 2, 10})
	want := Summary{N: 4, Min: 1, Median: 2.5, P90: 7.9, P99: 9.79, Max: 10, Mean: 4}
	const eps = 1e-9
	if got.N != want.N || got.Min != want.Min || got.Max != want.Max ||
		math.Abs(got.Median-want.Median) > eps || math.Abs(got.P90-want.P90) > eps ||
		math.Abs(got.P99-want.P99) > eps || math.Abs(got.Mean-want.Mean) > eps {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := summarize(nil); got != (Summary{}) {
		t.Errorf("empty: got %+v, want the zero Summary", got)
	}
}

func TestRatio(t *testing.T) {
	if r := ratio(3, 2); r == nil || *r != 1.5 {
		t.Errorf("got %v, want 1.5", r)
	}
	for _, tc := range [][2]float64{{1, 0}, {math.NaN(), 1}, {1, math.Inf(1)}} {
		if r := ratio(tc[0], tc[1]); r != nil {
			t.Errorf("ratio(%v, %v): got %v, want nil", tc[0], tc[1], *r)
		}
	}
}

func TestRotate(t *testing.T) {
	xs := []string{"a", "b", "c"}
	tests := []struct {
		k    int
		want []string
	}{
		{0, []string{"a", "b", "c"}},
		{1, []string{"b", "c", "a"}},
		{2, []string{"c", "a", "b"}},
		{4, []string{"b", "c", "a"}},
	}
	for _, tc := range tests {
		if got := rotate(xs, tc.k); !slices.Equal(got, tc.want) {
			t.Errorf("rotate %d: got %v, want %v", tc.k, got, tc.want)
		}
	}
	if !slices.Equal(xs, []string{"a", "b", "c"}) {
		t.Errorf("rotate changed its input: %v", xs)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1073741824", 1 << 30, false},
		{"1GiB", 1 << 30, false},
		{"1G", 1 << 30, false},
		{"64MiB", 64 << 20, false},
		{"1.5KiB", 1536, false},
		{"2GB", 2e9, false},
		{"10 MB", 10e6, false},
		{"512B", 512, false},
		{"0", 0, true},
		{"-1", 0, true},
		{"1.5", 0, true},
		{"1XB", 0, true},
		{"MiB", 0, true},
		{"", 0, true},
	}
	for _, tc := range tests {
		got, err := parseSize(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: got error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if got != tc.want {
			t.Errorf("%q: got %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{1 << 30, "1GiB"},
		{64 << 20, "64MiB"},
		{1536, "1536B"},
		{2048, "2KiB"},
		{1000, "1000B"},
	}
	for _, tc := range tests {
		if got := formatBytes(tc.in); got != tc.want {
			t.Errorf("%d: got %q, want %q", tc.in, got, tc.want)
		}
	}
}
