package main

import (
	"context"

	"go.uber.org/zap"

	"bastion/config"
	"bastion/upstream"
)

// newAWSProviders builds the Lightsail and EC2 providers cfg configures.
func newAWSProviders(ctx context.Context, cfg *config.Config, log *zap.Logger) ([]upstream.Provider, error) {
	return nil, nil
}
