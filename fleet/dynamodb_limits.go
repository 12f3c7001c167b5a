package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The limits' state, in the same table:
//
//   - "users#<user>": each replica's count of the user's links, one
//     attribute "r_<replica>" = {n, expires} each, and a version "ver"
//     that every write checks and bumps, so that admissions on two
//     replicas at once are serialised: one of them reads the other's count.
//   - "fail#<address>#<window number>": the failed authentications from
//     one source address in one fixed window (ADD, so concurrent failures
//     on several replicas all count).
const (
	usersPrefix = "users#"
	failPrefix  = "fail#"
	replicaCnt  = "r_"
	verAttr     = "ver"
	countAttr   = "n"

	// maxConflicts bounds the retries of a versioned write that keeps
	// losing to other replicas' writes.
	maxConflicts = 8
	// maxUserLen bounds a user name in a key.
	maxUserLen = 256
)

var (
	_ UserCounts = (*Store)(nil)
	_ Penalties  = (*Store)(nil)
)

// ErrConflict is a versioned write that lost to other replicas' writes
// maxConflicts times in a row.
var ErrConflict = errors.New("fleet: the per-user count kept changing under concurrent updates")

// AdmitUser admits one more link of user on replica if the user's links on
// every replica, with local() on this one, are at most max; it then stores
// local() as this replica's count. It returns the fleet-wide total.
func (s *Store) AdmitUser(ctx context.Context, user, replica string, local func() int, max int) (int, bool, error) {
	return s.writeUser(ctx, user, replica, local, max)
}

// SetUser stores local() as replica's count of user's links (refreshing
// its expiry; zero removes it).
func (s *Store) SetUser(ctx context.Context, user, replica string, local func() int) error {
	_, _, err := s.writeUser(ctx, user, replica, local, 0)
	return err
}

// writeUser is AdmitUser, or SetUser when max is 0: a read of the user's
// counts, then a write conditional on the version read, again while
// another replica's write wins. Expired counts of other replicas (a
// replica that died) are removed by the same write.
func (s *Store) writeUser(ctx context.Context, user, replica string, local func() int, max int) (int, bool, error) {
	if user == "" || len(user) > maxUserLen {
		return 0, false, fmt.Errorf("fleet: user name of %d bytes: want 1 to %d", len(user), maxUserLen)
	}
	if err := checkID("replica", replica); err != nil {
		return 0, false, err
	}
	key := pk(usersPrefix + user)
	mine := replicaCnt + replica
	for range maxConflicts {
		cctx, cancel := s.call(ctx)
		out, err := s.Client.GetItem(cctx, &dynamodb.GetItemInput{TableName: aws.String(s.Table), Key: key, ConsistentRead: aws.Bool(true)})
		cancel()
		if err != nil {
			return 0, false, fmt.Errorf("fleet: reading the link counts of %s: %w", user, err)
		}
		now := s.now().Unix()
		n := local()
		total := n
		names := map[string]string{"#ver": verAttr, "#exp": TTLAttr, "#me": mine}
		var remove []string
		for name, v := range out.Item {
			m, ok := v.(*types.AttributeValueMemberM)
			if !ok || !strings.HasPrefix(name, replicaCnt) || name == mine {
				continue
			}
			if nAttr(m.Value, TTLAttr) <= now {
				alias := "#x" + strconv.Itoa(len(remove))
				names[alias] = name
				remove = append(remove, alias)
				continue
			}
			total += int(nAttr(m.Value, countAttr))
		}
		if max > 0 && total > max {
			return total, false, nil
		}
		if n == 0 && out.Item[mine] == nil && len(remove) == 0 {
			return total, true, nil
		}
		exp := s.expiry(s.linkTTL())
		values := map[string]types.AttributeValue{":one": num(1), ":exp": exp}
		update := "SET #exp = :exp ADD #ver :one"
		if n > 0 {
			update = "SET #exp = :exp, #me = :me ADD #ver :one"
			values[":me"] = &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{countAttr: num(int64(n)), TTLAttr: exp}}
		} else {
			remove = append(remove, "#me")
		}
		if len(remove) > 0 {
			update += " REMOVE " + strings.Join(remove, ", ")
		}
		cond := "attribute_not_exists(#ver)"
		if v, ok := out.Item[verAttr].(*types.AttributeValueMemberN); ok {
			cond = "#ver = :ver"
			values[":ver"] = v
		}
		cctx, cancel = s.call(ctx)
		_, err = s.Client.UpdateItem(cctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(s.Table), Key: key,
			UpdateExpression: aws.String(update), ConditionExpression: aws.String(cond),
			ExpressionAttributeNames: names, ExpressionAttributeValues: values,
		})
		cancel()
		var failed *types.ConditionalCheckFailedException
		switch {
		case err == nil:
			return total, true, nil
		case errors.As(err, &failed):
			continue
		default:
			return 0, false, fmt.Errorf("fleet: writing the link counts of %s: %w", user, err)
		}
	}
	return 0, false, ErrConflict
}

// failKey returns the item key of addr's failures in window number w.
func failKey(addr string, w int64) map[string]types.AttributeValue {
	return pk(failPrefix + addr + "#" + strconv.FormatInt(w, 10))
}

// Fail records one failed authentication from addr at now and returns
// addr's failures in the window ending at now: this fixed window's count
// and the previous window's, weighted by how much of it the sliding
// window still covers.
func (s *Store) Fail(ctx context.Context, addr string, now time.Time, window time.Duration) (int, error) {
	if err := checkID("address", addr); err != nil {
		return 0, err
	}
	w, frac := windowOf(now, window)
	cctx, cancel := s.call(ctx)
	out, err := s.Client.UpdateItem(cctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(s.Table), Key: failKey(addr, w),
		UpdateExpression:          aws.String("ADD #n :one SET #exp = :exp"),
		ExpressionAttributeNames:  map[string]string{"#n": countAttr, "#exp": TTLAttr},
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": num(1), ":exp": num(now.Add(2 * window).Unix())},
		ReturnValues:              types.ReturnValueUpdatedNew,
	})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("fleet: recording a failed authentication from %s: %w", addr, err)
	}
	cur := nAttr(out.Attributes, countAttr)
	prev, err := s.failCount(ctx, addr, w-1, now)
	if err != nil {
		return int(cur), err
	}
	return slide(cur, prev, frac), nil
}

// Count returns addr's failures in the window ending at now.
func (s *Store) Count(ctx context.Context, addr string, now time.Time, window time.Duration) (int, error) {
	if err := checkID("address", addr); err != nil {
		return 0, err
	}
	w, frac := windowOf(now, window)
	cur, err := s.failCount(ctx, addr, w, now)
	if err != nil {
		return 0, err
	}
	prev, err := s.failCount(ctx, addr, w-1, now)
	if err != nil {
		return int(cur), err
	}
	return slide(cur, prev, frac), nil
}

func (s *Store) failCount(ctx context.Context, addr string, w int64, now time.Time) (int64, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	out, err := s.Client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.Table), Key: failKey(addr, w), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return 0, fmt.Errorf("fleet: reading the failed authentications from %s: %w", addr, err)
	}
	if nAttr(out.Item, TTLAttr) <= now.Unix() {
		return 0, nil
	}
	return nAttr(out.Item, countAttr), nil
}

// windowOf returns the number of the fixed window holding now, and how far
// into it now is (0 to 1).
func windowOf(now time.Time, window time.Duration) (int64, float64) {
	if window <= 0 {
		window = time.Minute
	}
	ms := now.UnixMilli()
	wms := window.Milliseconds()
	return ms / wms, float64(ms%wms) / float64(wms)
}

// slide estimates the count of a sliding window from the current fixed
// window's count and the previous one's.
func slide(cur, prev int64, frac float64) int {
	return int(math.Ceil(float64(cur) + float64(prev)*(1-frac)))
}
