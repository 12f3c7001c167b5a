package fleet

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The live-link registry and the kill requests, in the same table as the
// host keys (deploy/README.md, "Fleet table", documents the layout):
//
//   - "link#<link id>": one live link; refreshed by its replica every
//     heartbeat, expired TTL after the last refresh.
//   - "kills#<replica>": the kill requests waiting for one replica, one
//     attribute "k_<link id>" each, so that a request is added and
//     consumed without reading the others.
//
// Every read also checks TTLAttr itself: DynamoDB deletes expired items
// only eventually (and dynalite never), so an expired item counts as gone.
const (
	linkPrefix  = "link#"
	killsPrefix = "kills#"
	killAttr    = "k_"

	// DefaultLinkTTL is how long a link stays listed after its replica
	// last refreshed it.
	DefaultLinkTTL = 30 * time.Second
	// MaxListedLinks bounds what List returns and reads.
	MaxListedLinks = 10_000
	// maxFieldLen bounds every string of a link item; longer ones are
	// cut (they come from names a person typed).
	maxFieldLen = 512
	// maxKillsPerPoll bounds the kill requests one Kills consumes.
	maxKillsPerPoll = 100
)

// Store also implements Directory.
var _ Directory = (*Store)(nil)

func (s *Store) linkTTL() time.Duration {
	if s.LinkTTL > 0 {
		return s.LinkTTL
	}
	return DefaultLinkTTL
}

func (s *Store) expiry(ttl time.Duration) types.AttributeValue {
	return num(s.now().Add(ttl).Unix())
}

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func str(v string) types.AttributeValue {
	if len(v) > maxFieldLen {
		v = v[:maxFieldLen]
	}
	return &types.AttributeValueMemberS{Value: v}
}

func pk(v string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{KeyAttr: &types.AttributeValueMemberS{Value: v}}
}

// checkID refuses an empty or overlong id of what, before it becomes part
// of a key.
func checkID(what, id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("fleet: %s %q: empty or longer than %d bytes", what, id, maxIDLen)
	}
	return nil
}

// Put registers or refreshes l, to expire LinkTTL from now.
func (s *Store) Put(ctx context.Context, l Link) error {
	if err := checkID("link id", l.ID); err != nil {
		return err
	}
	if err := checkID("replica", l.Replica); err != nil {
		return err
	}
	item := pk(linkPrefix + l.ID)
	item["user"] = str(l.User)
	item["target"] = str(l.Target)
	item["os_user"] = str(l.OSUser)
	item[replicaAttr] = str(l.Replica)
	item["advertise"] = str(l.Advertise)
	item["start"] = num(l.Start.UnixMilli())
	item["last_active"] = num(l.LastActive.UnixMilli())
	item["bytes_in"] = num(l.BytesIn)
	item["bytes_out"] = num(l.BytesOut)
	item["pty"] = &types.AttributeValueMemberBOOL{Value: l.PTY}
	item[TTLAttr] = s.expiry(s.linkTTL())
	ctx, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.Client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.Table), Item: item}); err != nil {
		return fmt.Errorf("fleet: registering link %s: %w", l.ID, err)
	}
	return nil
}

// Delete removes the link id.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := checkID("link id", id); err != nil {
		return err
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(s.Table), Key: pk(linkPrefix + id)}); err != nil {
		return fmt.Errorf("fleet: removing link %s: %w", id, err)
	}
	return nil
}

// List returns the fleet's live links (at most MaxListedLinks), by a
// consistent scan of the link items. The call deadline covers the whole
// scan.
func (s *Store) List(ctx context.Context) ([]Link, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	now := s.now()
	var out []Link
	in := &dynamodb.ScanInput{
		TableName:                 aws.String(s.Table),
		ConsistentRead:            aws.Bool(true),
		FilterExpression:          aws.String("begins_with(#pk, :p) AND #exp > :now"),
		ExpressionAttributeNames:  map[string]string{"#pk": KeyAttr, "#exp": TTLAttr},
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": str(linkPrefix), ":now": num(now.Unix())},
	}
	for pages := 0; ; pages++ {
		page, err := s.Client.Scan(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("fleet: listing links: %w", err)
		}
		for _, item := range page.Items {
			if l, ok := linkOf(item, now); ok && len(out) < MaxListedLinks {
				out = append(out, l)
			}
		}
		if len(page.LastEvaluatedKey) == 0 || len(out) >= MaxListedLinks {
			return out, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// linkOf decodes a link item, if it is one and has not expired.
func linkOf(item map[string]types.AttributeValue, now time.Time) (Link, bool) {
	id, ok := strings.CutPrefix(sAttr(item, KeyAttr), linkPrefix)
	if !ok || id == "" || nAttr(item, TTLAttr) <= now.Unix() {
		return Link{}, false
	}
	pty, _ := item["pty"].(*types.AttributeValueMemberBOOL)
	return Link{
		ID: id, User: sAttr(item, "user"), Target: sAttr(item, "target"), OSUser: sAttr(item, "os_user"),
		Replica: sAttr(item, replicaAttr), Advertise: sAttr(item, "advertise"),
		Start: time.UnixMilli(nAttr(item, "start")), LastActive: time.UnixMilli(nAttr(item, "last_active")),
		BytesIn: nAttr(item, "bytes_in"), BytesOut: nAttr(item, "bytes_out"), PTY: pty != nil && pty.Value,
	}, true
}

func sAttr(item map[string]types.AttributeValue, name string) string {
	if v, ok := item[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func nAttr(item map[string]types.AttributeValue, name string) int64 {
	if v, ok := item[name].(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	return 0
}

// Lookup returns the live link id, or false.
func (s *Store) Lookup(ctx context.Context, id string) (Link, bool, error) {
	if err := checkID("link id", id); err != nil {
		return Link{}, false, err
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	out, err := s.Client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.Table), Key: pk(linkPrefix + id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return Link{}, false, fmt.Errorf("fleet: reading link %s: %w", id, err)
	}
	l, ok := linkOf(out.Item, s.now())
	return l, ok, nil
}

// CountUser returns how many live links user holds fleet-wide, from a
// scan; the limits use the per-user counts (AdmitUser) instead.
func (s *Store) CountUser(ctx context.Context, user string) (int, error) {
	links, err := s.List(ctx)
	n := 0
	for _, l := range links {
		if l.User == user {
			n++
		}
	}
	return n, err
}

// RequestKill leaves k for the replica holding its link. A request for a
// link that is not live is dropped.
func (s *Store) RequestKill(ctx context.Context, k Kill) error {
	if err := checkID("link id", k.LinkID); err != nil {
		return err
	}
	l, ok, err := s.Lookup(ctx, k.LinkID)
	if err != nil || !ok {
		return err
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	_, err = s.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(s.Table),
		Key:                      pk(killsPrefix + l.Replica),
		UpdateExpression:         aws.String("SET #k = :k, #exp = :exp"),
		ExpressionAttributeNames: map[string]string{"#k": killAttr + k.LinkID, "#exp": TTLAttr},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":k": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
				"by": str(k.By), "reason": str(k.Reason), "at": num(k.At.UnixMilli())}},
			":exp": s.expiry(s.linkTTL()),
		},
	})
	if err != nil {
		return fmt.Errorf("fleet: requesting the end of link %s: %w", k.LinkID, err)
	}
	return nil
}

// Kills returns and consumes the kill requests for replica's links: one
// consistent read of its kills item and, when it holds any, one update
// removing those read.
func (s *Store) Kills(ctx context.Context, replica string) ([]Kill, error) {
	if err := checkID("replica", replica); err != nil {
		return nil, err
	}
	cctx, cancel := s.call(ctx)
	out, err := s.Client.GetItem(cctx, &dynamodb.GetItemInput{TableName: aws.String(s.Table), Key: pk(killsPrefix + replica), ConsistentRead: aws.Bool(true)})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("fleet: reading the kill requests of %s: %w", replica, err)
	}
	var kills []Kill
	names := map[string]string{}
	var remove []string
	for name, v := range out.Item {
		id, ok := strings.CutPrefix(name, killAttr)
		m, isMap := v.(*types.AttributeValueMemberM)
		if !ok || !isMap {
			continue
		}
		if len(remove) == maxKillsPerPoll {
			break // the rest on the next poll
		}
		alias := "#k" + strconv.Itoa(len(remove))
		names[alias] = name
		remove = append(remove, alias)
		kills = append(kills, Kill{LinkID: id, By: sAttr(m.Value, "by"), Reason: sAttr(m.Value, "reason"), At: time.UnixMilli(nAttr(m.Value, "at"))})
	}
	if len(remove) == 0 {
		return nil, nil
	}
	if nAttr(out.Item, TTLAttr) <= s.now().Unix() {
		kills = nil // requests older than a link's TTL: their links are gone
	}
	cctx, cancel = s.call(ctx)
	defer cancel()
	_, err = s.Client.UpdateItem(cctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(s.Table),
		Key:                      pk(killsPrefix + replica),
		UpdateExpression:         aws.String("REMOVE " + strings.Join(remove, ", ")),
		ExpressionAttributeNames: names,
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: consuming the kill requests of %s: %w", replica, err)
	}
	return kills, nil
}
