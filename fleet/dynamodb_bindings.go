package fleet

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"bastion/sso"
)

// SSO bindings, in the same table: "binding#<key fingerprint>", with the
// account's issuer, subject, user name, groups and email, and TTLAttr at
// the binding's expiry, so that DynamoDB deletes it once it has ended (and
// a read checks the expiry itself, as the deletion may lag by days).
const (
	bindingPrefix = "binding#"
	// maxBindingGroups bounds the groups stored with a binding.
	maxBindingGroups = 64
)

var _ sso.Store = (*Store)(nil)

// Binding returns the live binding of the key with fingerprint fp.
func (s *Store) Binding(ctx context.Context, fp string) (sso.Binding, bool, error) {
	if err := checkID("key fingerprint", fp); err != nil {
		return sso.Binding{}, false, err
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	out, err := s.Client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.Table), Key: pk(bindingPrefix + fp), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return sso.Binding{}, false, fmt.Errorf("fleet: reading the sso binding of %s: %w", fp, err)
	}
	if out.Item == nil {
		return sso.Binding{}, false, nil
	}
	b := sso.Binding{Fingerprint: fp, Issuer: sval(out.Item["issuer"]), Subject: sval(out.Item["subject"]),
		Username: sval(out.Item["user"]), Email: sval(out.Item["email"])}
	if n, ok := out.Item[TTLAttr].(*types.AttributeValueMemberN); ok {
		if sec, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
			b.Expires = time.Unix(sec, 0).UTC()
		}
	}
	if l, ok := out.Item["groups"].(*types.AttributeValueMemberL); ok {
		for _, v := range l.Value {
			if g, ok := v.(*types.AttributeValueMemberS); ok && g.Value != "" {
				b.Groups = append(b.Groups, g.Value)
			}
			if len(b.Groups) == maxBindingGroups {
				break
			}
		}
	}
	if b.Subject == "" || b.Username == "" || !s.now().Before(b.Expires) {
		return sso.Binding{}, false, nil
	}
	return b, true, nil
}

// PutBinding stores b, to expire at b.Expires.
func (s *Store) PutBinding(ctx context.Context, b sso.Binding) error {
	if err := checkID("key fingerprint", b.Fingerprint); err != nil {
		return err
	}
	if len(b.Groups) > maxBindingGroups {
		return fmt.Errorf("fleet: sso binding with %d groups: at most %d", len(b.Groups), maxBindingGroups)
	}
	item := pk(bindingPrefix + b.Fingerprint)
	item["issuer"] = str(b.Issuer)
	item["subject"] = str(b.Subject)
	item["user"] = str(b.Username)
	if b.Email != "" {
		item["email"] = str(b.Email)
	}
	groups := make([]string, len(b.Groups))
	for i, g := range b.Groups {
		if len(g) > maxFieldLen {
			g = g[:maxFieldLen]
		}
		groups[i] = g
	}
	item["groups"] = &types.AttributeValueMemberL{Value: stringValues(groups)}
	item[replicaAttr] = str(s.Replica)
	item[TTLAttr] = num(b.Expires.Unix())
	ctx, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.Client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.Table), Item: item}); err != nil {
		return fmt.Errorf("fleet: storing the sso binding of %s: %w", b.Fingerprint, err)
	}
	return nil
}

// DeleteBinding removes the binding of fp.
func (s *Store) DeleteBinding(ctx context.Context, fp string) error {
	if err := checkID("key fingerprint", fp); err != nil {
		return err
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(s.Table), Key: pk(bindingPrefix + fp)}); err != nil {
		return fmt.Errorf("fleet: removing the sso binding of %s: %w", fp, err)
	}
	return nil
}

func sval(v types.AttributeValue) string {
	if s, ok := v.(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}
