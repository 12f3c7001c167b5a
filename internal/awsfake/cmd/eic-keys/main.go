// Command eic-keys prints the SSH keys currently pushed to an instance with
// EC2 Instance Connect, as recorded by the awsfake server. It is meant as
// sshd's AuthorizedKeysCommand on a test instance, in the role EC2's
// eic_run_authorized_keys plays on a real one:
//
//	AuthorizedKeysCommand /usr/local/bin/eic-keys http://127.0.0.1:PORT i-0123456789abcdef0 %u
//	AuthorizedKeysCommandUser nobody
//
// Usage:
//
//	eic-keys FAKE_URL INSTANCE_ID OS_USER
//
// It writes the keys in authorized_keys format to standard output (nothing
// if there are none) and exits 0, or reports an error on standard error and
// exits 1.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// keysPath is awsfake.KeysPath; the command imports only the standard
// library so that it can be built and copied anywhere.
const keysPath = "/_fake/ec2-instance-connect/keys"

// timeout bounds the whole request, so that sshd never waits long.
const timeout = 5 * time.Second

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: eic-keys FAKE_URL INSTANCE_ID OS_USER")
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := run(ctx, os.Stdout, os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintf(os.Stderr, "eic-keys: %v\n", err)
		cancel()
		os.Exit(1)
	}
}

// run fetches the keys for instanceID and osUser from the fake at base and
// copies them to w.
func run(ctx context.Context, w io.Writer, base, instanceID, osUser string) error {
	u, err := url.Parse(strings.TrimRight(base, "/") + keysPath)
	if err != nil {
		return fmt.Errorf("parsing url %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url %q is not http or https", base)
	}
	u.RawQuery = url.Values{"instance_id": {instanceID}, "os_user": {osUser}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("creating request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("fetching keys: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("reading keys: %w", err)
	}
	return nil
}
