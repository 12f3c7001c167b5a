package fleet_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// clientFor returns a real DynamoDB client for the endpoint url, without
// retries.
func clientFor(t *testing.T, url string) *dynamodb.Client {
	t.Helper()
	return dynamodb.New(dynamodb.Options{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDFLEETTEST", "secret", ""),
		BaseEndpoint:     aws.String(url),
		RetryMaxAttempts: 1,
	})
}
