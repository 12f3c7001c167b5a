package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The table's layout. Every item has the string partition key KeyAttr;
// items that expire carry TTLAttr (Unix seconds), which Init enables as the
// table's time to live.
const (
	// KeyAttr is the partition key: "<kind>#<id>", such as
	// "hostkey#i-0123456789abcdef0".
	KeyAttr = "pk"
	// TTLAttr holds the Unix time after which DynamoDB deletes the item.
	TTLAttr = "expires"

	hostKeyPrefix = "hostkey#"
	keysAttr      = "keys"
	replicaAttr   = "replica"
	learnedAttr   = "learned_at"
)

// Bounds on an item, so that what an instance presents cannot make one
// grow: DynamoDB items are at most 400 KB.
const (
	maxIDLen      = 64
	maxKeys       = 16
	maxKeyLineLen = 8 << 10
)

// DefaultCallTimeout bounds each DynamoDB call.
const DefaultCallTimeout = 2 * time.Second

// API is the part of the DynamoDB client the store uses.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

// Store is the fleet's state in one DynamoDB table. It implements
// HostKeys, Directory, UserCounts and Penalties; every call has a deadline
// (CallTimeout).
type Store struct {
	// Client is the DynamoDB client (AWS_ENDPOINT_URL_DYNAMODB points the
	// SDK's at another endpoint, such as dynalite in tests).
	Client API
	// Table is the table's name.
	Table string
	// Replica names this replica in what it writes.
	Replica string
	// CallTimeout bounds each call; if zero, DefaultCallTimeout.
	CallTimeout time.Duration
	// LinkTTL is how long a link, a kill request or a per-user count
	// stays after its last write; if zero, DefaultLinkTTL.
	LinkTTL time.Duration
	// Now returns the current time; if nil, time.Now.
	Now func() time.Time
}

var _ HostKeys = (*Store)(nil)

func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	d := s.CallTimeout
	if d <= 0 {
		d = DefaultCallTimeout
	}
	return context.WithTimeout(ctx, d)
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func hostKeyItemKey(id string) (map[string]types.AttributeValue, error) {
	if id == "" || len(id) > maxIDLen {
		return nil, fmt.Errorf("fleet: host key id %q: empty or longer than %d bytes", id, maxIDLen)
	}
	return map[string]types.AttributeValue{KeyAttr: &types.AttributeValueMemberS{Value: hostKeyPrefix + id}}, nil
}

// Get returns the key lines stored for id, or none.
func (s *Store) Get(ctx context.Context, id string) ([]string, error) {
	key, err := hostKeyItemKey(id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	out, err := s.Client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.Table), Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, fmt.Errorf("fleet: reading the host keys of %s: %w", id, err)
	}
	return keyLines(out.Item), nil
}

// Learn stores keys for id unless some are stored already, by a
// conditional put: of two replicas learning at once, exactly one wins, and
// the other gets the winner's keys back.
func (s *Store) Learn(ctx context.Context, id string, keys []string) (bool, []string, error) {
	key, err := hostKeyItemKey(id)
	if err != nil {
		return false, nil, err
	}
	if len(keys) == 0 || len(keys) > maxKeys {
		return false, nil, fmt.Errorf("fleet: learning %d host keys for %s: want 1 to %d", len(keys), id, maxKeys)
	}
	for _, k := range keys {
		if k == "" || len(k) > maxKeyLineLen {
			return false, nil, fmt.Errorf("fleet: learning a host key line of %d bytes for %s", len(k), id)
		}
	}
	item := map[string]types.AttributeValue{
		KeyAttr:     key[KeyAttr],
		keysAttr:    &types.AttributeValueMemberL{Value: stringValues(keys)},
		replicaAttr: &types.AttributeValueMemberS{Value: s.Replica},
		learnedAttr: &types.AttributeValueMemberS{Value: s.now().UTC().Format(time.RFC3339)},
	}
	cctx, cancel := s.call(ctx)
	_, err = s.Client.PutItem(cctx, &dynamodb.PutItemInput{
		TableName:           aws.String(s.Table),
		Item:                item,
		ConditionExpression: aws.String("attribute_not_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{
			"#pk": KeyAttr,
		},
	})
	cancel()
	var failed *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		return true, keys, nil
	case errors.As(err, &failed):
		stored, err := s.Get(ctx, id)
		if err != nil {
			return false, nil, err
		}
		if len(stored) == 0 {
			return false, nil, fmt.Errorf("fleet: the host keys of %s were stored by another replica but cannot be read", id)
		}
		return false, stored, nil
	default:
		return false, nil, fmt.Errorf("fleet: storing the host keys of %s: %w", id, err)
	}
}

func stringValues(ss []string) []types.AttributeValue {
	out := make([]types.AttributeValue, len(ss))
	for i, s := range ss {
		out[i] = &types.AttributeValueMemberS{Value: s}
	}
	return out
}

// keyLines returns the key lines of a host key item; malformed entries are
// skipped, and at most maxKeys are returned.
func keyLines(item map[string]types.AttributeValue) []string {
	l, ok := item[keysAttr].(*types.AttributeValueMemberL)
	if !ok {
		return nil
	}
	var out []string
	for _, v := range l.Value {
		if s, ok := v.(*types.AttributeValueMemberS); ok && s.Value != "" && len(s.Value) <= maxKeyLineLen {
			out = append(out, s.Value)
		}
		if len(out) == maxKeys {
			break
		}
	}
	return out
}

// Init creates the table if it is missing (on-demand capacity, the
// partition key KeyAttr), waits until it is active, and turns on the time
// to live on TTLAttr. It is idempotent: on an existing table it only
// checks the key schema. wait bounds the whole of it.
func (s *Store) Init(ctx context.Context, wait time.Duration) (created bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	out, err := s.Client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.Table)})
	var missing *types.ResourceNotFoundException
	switch {
	case errors.As(err, &missing):
		_, err = s.Client.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:            aws.String(s.Table),
			BillingMode:          types.BillingModePayPerRequest,
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(KeyAttr), AttributeType: types.ScalarAttributeTypeS}},
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(KeyAttr), KeyType: types.KeyTypeHash}},
		})
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return false, fmt.Errorf("fleet: creating table %s: %w", s.Table, err)
		}
		created = err == nil
	case err != nil:
		return false, fmt.Errorf("fleet: describing table %s: %w", s.Table, err)
	default:
		ks := out.Table.KeySchema
		if len(ks) != 1 || aws.ToString(ks[0].AttributeName) != KeyAttr || ks[0].KeyType != types.KeyTypeHash {
			return false, fmt.Errorf("fleet: table %s exists with another key schema: want the one hash key %q", s.Table, KeyAttr)
		}
	}
	for {
		out, err := s.Client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.Table)})
		if err != nil {
			return created, fmt.Errorf("fleet: waiting for table %s: %w", s.Table, err)
		}
		if out.Table.TableStatus == types.TableStatusActive {
			break
		}
		select {
		case <-ctx.Done():
			return created, fmt.Errorf("fleet: table %s is still %s: %w", s.Table, out.Table.TableStatus, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	_, err = s.Client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(s.Table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(TTLAttr), Enabled: aws.Bool(true)},
	})
	var unknown interface{ ErrorCode() string }
	switch {
	case err == nil, ttlAlreadyOn(err):
	case errors.As(err, &unknown) && unknown.ErrorCode() == "UnknownOperationException":
		// DynamoDB implementations for tests (dynalite) have no time to
		// live; host keys, the only items written so far, never expire.
		return created, ErrNoTTL
	default:
		return created, fmt.Errorf("fleet: enabling the time to live of %s on %s: %w", s.Table, TTLAttr, err)
	}
	return created, nil
}

// ErrNoTTL is Init's answer when the endpoint does not support time to
// live (UpdateTimeToLive): the table is ready, but items are not expired.
var ErrNoTTL = errors.New("fleet: the DynamoDB endpoint does not support time to live (UpdateTimeToLive); the table is ready, but expired items are not deleted")

// ttlAlreadyOn reports whether err is DynamoDB's answer to enabling a time
// to live that is enabled already.
func ttlAlreadyOn(err error) bool {
	var ae interface{ ErrorMessage() string }
	return errors.As(err, &ae) && strings.Contains(ae.ErrorMessage(), "already enabled")
}
