package serialconsole

import (
	"context"
	"errors"
	"net"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"golang.org/x/crypto/ssh"

	"bastion/upstream"
	"bastion/upstream/build"
	"bastion/upstream/instanceconnect"
	"bastion/upstream/provider"
)

func init() { build.Register(provider.NameSerial, fromConfig) }

// fromConfig builds the serial console provider of providers.ec2, whenever
// that section is present: who may use it is the policies' serial_console
// capability, denied by default.
func fromConfig(ctx context.Context, env build.Env) (upstream.Provider, error) {
	ec := env.Config.Providers.EC2
	if ec == nil {
		return nil, nil
	}
	awsCfg, err := env.AWS(ctx)
	if err != nil {
		return nil, err
	}
	log := env.Logger.Named(provider.NameSerial)
	finders := make(map[string]instanceconnect.Clients, len(ec.Regions))
	apis := make(map[string]API, len(ec.Regions))
	for _, r := range ec.Regions {
		eic := ec2instanceconnect.NewFromConfig(awsCfg, func(o *ec2instanceconnect.Options) { o.Region = r })
		finders[r] = instanceconnect.Clients{
			EC2:     ec2.NewFromConfig(awsCfg, func(o *ec2.Options) { o.Region = r }),
			Connect: eic,
		}
		apis[r] = eic
	}
	// The finder only resolves and lists; it never logs in, so it has no
	// host keys to check.
	instances, err := instanceconnect.NewWithClients(finders, noHostKeys{}, instanceconnect.Config{
		Regions:      ec.Regions,
		Address:      ec.Address,
		Port:         ec.Port,
		ResolveCache: build.ResolveCache(ec.ResolveCache),
		CallTimeout:  env.Config.Limits.AWSTimeout.D(),
		Logger:       log,
		Observe:      env.Metrics.AWSCall,
	})
	if err != nil {
		return nil, err
	}
	cfg := Config{
		CallTimeout: env.Config.Limits.AWSTimeout.D(),
		Logger:      log,
		Observe:     env.Metrics.AWSCall,
	}
	if sc := ec.SerialConsole; sc != nil {
		cfg.Endpoint, cfg.HostKeys = sc.Endpoint, sc.HostKeys
	}
	return New(instances, apis, cfg)
}

// errNoLogin refuses a login through the serial provider's instance
// finder, which never makes one.
var errNoLogin = errors.New("serialconsole: the instance finder does not log in")

// noHostKeys is the host key store of the instance finder: it refuses
// every key.
type noHostKeys struct{}

func (noHostKeys) Callback(string) ssh.HostKeyCallback {
	return func(string, net.Addr, ssh.PublicKey) error { return errNoLogin }
}

func (noHostKeys) HostKeyAlgorithms(string) []string { return nil }
