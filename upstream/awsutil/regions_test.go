package awsutil

import (
	"errors"
	"strings"
	"testing"
)

func TestEachRegion(t *testing.T) {
	boom := errors.New("boom")
	got, err := EachRegion([]string{"us-east-1", "eu-west-2", "ap-south-1"}, func(r string) ([]string, error) {
		if r == "eu-west-2" {
			return nil, boom
		}
		return []string{r + "/a", r + "/b"}, nil
	})
	if want := "us-east-1/a,us-east-1/b,ap-south-1/a,ap-south-1/b"; strings.Join(got, ",") != want {
		t.Errorf("results: got %v, want %s (region order, failed region left out)", got, want)
	}
	if !errors.Is(err, boom) {
		t.Errorf("error: got %v, want it to wrap the region's failure", err)
	}
	if got, err := EachRegion(nil, func(string) ([]int, error) { return []int{1}, nil }); got != nil || err != nil {
		t.Errorf("no regions: got %v, %v; want nil, nil", got, err)
	}
}
