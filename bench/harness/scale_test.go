package main

import (
	"math"
	"testing"
)

func TestFitLine(t *testing.T) {
	x := []float64{1000, 2000, 3000, 4000}
	y := []float64{30e6 + 1000*150e3, 30e6 + 2000*150e3, 30e6 + 3000*150e3, 30e6 + 4000*150e3}
	f := fitLine(x, y)
	if math.Abs(f.Slope-150e3) > 1e-3 || math.Abs(f.Intercept-30e6) > 1 || math.Abs(f.R2-1) > 1e-9 {
		t.Errorf("exact line: got %+v", f)
	}
	// Noise lowers R² below 1 and keeps it positive.
	y[1] += 50e6
	y[2] -= 50e6
	if f := fitLine(x, y); f.R2 >= 0.999 || f.R2 <= 0 {
		t.Errorf("noisy line: R² %v, want in (0, 0.999)", f.R2)
	}
	if f := fitLine(x[:1], y[:1]); f != (LinearFit{}) {
		t.Errorf("one point: got %+v, want zero", f)
	}
}

func TestParseScaleFlags(t *testing.T) {
	o, err := parseOptions([]string{"--only", "scale", "--scale", "500", "--scale-step", "100", "--scale-route", "c"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Scale != 500 || o.ScaleStep != 100 || len(o.ScaleRoutes) != 1 || o.ScaleRoutes[0] != modeBastionDirect {
		t.Errorf("got %+v", o)
	}
	if _, err := parseOptions([]string{"--only", "scale", "--scale-route", "a"}, nil); err == nil {
		t.Error("--scale-route a: no error")
	}
	o, err = parseOptions(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range o.Only {
		if p == "scale" {
			t.Error("scale runs by default")
		}
	}
}

func TestRateRatios(t *testing.T) {
	var res ScaleResult
	for i, r := range []float64{100, 200, 100, 90, 80, 70, 60} {
		res.Steps = append(res.Steps, ScaleStep{ScalePoint: ScalePoint{Sessions: (i + 1) * 500}, Rate: r})
	}
	rateRatios(&res)
	// 1,000 is the second step; the window is the first three.
	if res.RateFirstAt != 1000 || res.RateFirst != 200 || res.RateLast != 60 {
		t.Errorf("first/last: got %+v", res)
	}
	if math.Abs(res.RateEarly-400.0/3) > 1e-9 || math.Abs(res.RateLate-70) > 1e-9 || math.Abs(res.RateSmoothed-70/(400.0/3)) > 1e-9 {
		t.Errorf("windows: got early %v late %v ratio %v", res.RateEarly, res.RateLate, res.RateSmoothed)
	}
}
