package awsutil

import (
	"context"

	"golang.org/x/sync/singleflight"
)

// Shared runs fn once for all concurrent callers of g with the same key and
// gives each the result. fn runs under a context that keeps ctx's values but
// not its cancellation, so that the first caller giving up does not fail the
// others; fn must therefore bound itself (Do does, with the call's
// deadline). A caller whose ctx ends stops waiting and gets its cause.
func Shared(ctx context.Context, g *singleflight.Group, key string, fn func(context.Context) (any, error)) (any, error) {
	detached := context.WithoutCancel(ctx)
	ch := g.DoChan(key, func() (any, error) { return fn(detached) })
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}
