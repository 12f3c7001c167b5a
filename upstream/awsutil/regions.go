package awsutil

import (
	"errors"
	"sync"
)

// EachRegion calls fn for every region at once and returns their results
// in the order of regions, with every failure joined in the error. The
// results of the regions that succeeded are returned even then: a lookup
// that must be all or nothing discards them on error, a listing keeps
// them.
func EachRegion[T any](regions []string, fn func(region string) ([]T, error)) ([]T, error) {
	lists := make([][]T, len(regions))
	errs := make([]error, len(regions))
	var wg sync.WaitGroup
	for i, r := range regions {
		wg.Go(func() { lists[i], errs[i] = fn(r) })
	}
	wg.Wait()
	var out []T
	for _, l := range lists {
		out = append(out, l...)
	}
	return out, errors.Join(errs...)
}
