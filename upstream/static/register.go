package static

import (
	"context"
	"fmt"

	"golang.org/x/crypto/ssh"

	"bastion/upstream"
	"bastion/upstream/build"
	"bastion/upstream/provider"
)

func init() { build.Register(provider.NameStatic, fromConfig) }

// fromConfig builds the provider of providers.static, if configured and
// env.Files allows reading its private keys.
func fromConfig(_ context.Context, env build.Env) (upstream.Provider, error) {
	sts := env.Config.Providers.Static
	if !env.Files || len(sts) == 0 {
		return nil, nil
	}
	hosts := make([]Host, 0, len(sts))
	for _, st := range sts {
		signer, err := LoadSigner(st.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", st.Name, err)
		}
		h := Host{Name: st.Name, Address: st.Address, User: st.User, Signer: signer, KnownHosts: st.KnownHosts, Tags: st.Tags}
		if st.HostKey != "" {
			h.HostKey, _, _, _, err = ssh.ParseAuthorizedKey([]byte(st.HostKey))
			if err != nil {
				return nil, fmt.Errorf("%s: host_key: %w", st.Name, err)
			}
		}
		hosts = append(hosts, h)
	}
	return New(hosts)
}
