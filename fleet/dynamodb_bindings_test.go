package fleet_test

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"bastion/fleet"
	"bastion/internal/testkit"
	"bastion/sso"
)

// TestStoreBindings: a binding put by one replica is read by another, its
// expiry holds (the item carries the table's TTL attribute, and a read
// checks it, as DynamoDB deletes late), and a delete reaches every replica.
func TestStoreBindings(t *testing.T) {
	d := testkit.StartDynalite(t)
	a, b := newStore(t, d, "a"), newStore(t, d, "b")
	if _, err := a.Init(t.Context(), 30*time.Second); err != nil && !errors.Is(err, fleet.ErrNoTTL) {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	want := sso.Binding{Fingerprint: "SHA256:QKhfZuk/eRHc3oa4wqwG7vTRH9POThkjX6aDuOWtdMg", Issuer: "https://idp", Subject: "sub-1",
		Username: "carol", Groups: []string{"dev", "ops"}, Email: "carol@example.com", Expires: now.Add(time.Hour)}
	if err := a.PutBinding(t.Context(), want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := b.Binding(t.Context(), want.Fingerprint)
	if err != nil || !ok {
		t.Fatalf("replica b: got %v, %v; want the binding", ok, err)
	}
	if got.Subject != want.Subject || got.Username != want.Username || got.Issuer != want.Issuer || got.Email != want.Email ||
		!slices.Equal(got.Groups, want.Groups) || !got.Expires.Equal(want.Expires) {
		t.Errorf("replica b: got %+v, want %+v", got, want)
	}
	item, err := clientFor(t, d.URL).GetItem(t.Context(), &dynamodb.GetItemInput{TableName: aws.String("bastion-fleet"),
		Key: map[string]types.AttributeValue{fleet.KeyAttr: &types.AttributeValueMemberS{Value: "binding#" + want.Fingerprint}}})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := item.Item[fleet.TTLAttr].(*types.AttributeValueMemberN); !ok || n.Value != strconv.FormatInt(want.Expires.Unix(), 10) {
		t.Errorf("item's %s: got %v, want the binding's expiry %d", fleet.TTLAttr, item.Item[fleet.TTLAttr], want.Expires.Unix())
	}
	if _, ok, err := b.Binding(t.Context(), "SHA256:other"); ok || err != nil {
		t.Errorf("unbound key: got %v, %v; want none", ok, err)
	}

	// Expired, though the item is still there.
	later := newStore(t, d, "c")
	later.Now = func() time.Time { return now.Add(time.Hour) }
	if _, ok, _ := later.Binding(t.Context(), want.Fingerprint); ok {
		t.Error("binding honoured at its expiry")
	}

	if err := b.DeleteBinding(t.Context(), want.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := a.Binding(t.Context(), want.Fingerprint); ok {
		t.Error("replica a still sees the binding replica b deleted")
	}

	// Hostile input is refused before it becomes a key or an item.
	if _, _, err := a.Binding(t.Context(), string(make([]byte, 100))); err == nil {
		t.Error("an overlong fingerprint was looked up")
	}
	many := want
	many.Groups = make([]string, 65)
	if err := a.PutBinding(t.Context(), many); err == nil {
		t.Error("a binding with 65 groups was stored")
	}
}
