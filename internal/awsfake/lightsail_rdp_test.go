package awsfake

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lightsail"
	"github.com/aws/aws-sdk-go-v2/service/lightsail/types"
)

// TestLightsailWindows reads a Windows instance through the SDK client: a
// Windows blueprint with port 3389 open, RDP access details with the
// password (default key pair) or only passwordData (custom key pair) and
// the certificate as an x509-cert host key, and SSH refused.
func TestLightsailWindows(t *testing.T) {
	s := startServer(t, Options{})
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "EC2AMAZ"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := EncryptWindowsPassword(&key.PublicKey, "pw")
	if err != nil {
		t.Fatal(err)
	}
	s.AddLightsailInstance(LightsailInstance{Name: "win-1", PublicIP: "203.0.113.5", Windows: &LightsailWindows{Certificates: [][]byte{der}, Password: "plain"}})
	s.AddLightsailInstance(LightsailInstance{Name: "win-2", Windows: &LightsailWindows{Certificates: [][]byte{der}, KeyPairName: "mine", PasswordCiphertext: ct}})
	client := lightsailClient(t, s, clientConfig{region: DefaultRegion})

	inst, err := client.GetInstance(t.Context(), &lightsail.GetInstanceInput{InstanceName: aws.String("win-1")})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(inst.Instance.BlueprintId); !strings.HasPrefix(got, "windows_") || aws.ToString(inst.Instance.Username) != "Administrator" ||
		inst.Instance.Networking.Ports[0].FromPort != 3389 {
		t.Errorf("got blueprint %s, user %s, port %d; want a Windows blueprint, Administrator, 3389", got, aws.ToString(inst.Instance.Username), inst.Instance.Networking.Ports[0].FromPort)
	}

	out, err := client.GetInstanceAccessDetails(t.Context(), &lightsail.GetInstanceAccessDetailsInput{InstanceName: aws.String("win-1"), Protocol: types.InstanceAccessProtocolRdp})
	if err != nil {
		t.Fatal(err)
	}
	ad := out.AccessDetails
	sum := sha256.Sum256(der)
	if aws.ToString(ad.Password) != "plain" || aws.ToString(ad.PasswordData.KeyPairName) != "LightsailDefaultKeyPair" || len(ad.HostKeys) != 1 {
		t.Fatalf("got password %q, key pair %q, %d host keys", aws.ToString(ad.Password), aws.ToString(ad.PasswordData.KeyPairName), len(ad.HostKeys))
	}
	hk := ad.HostKeys[0]
	if aws.ToString(hk.Algorithm) != "x509-cert" || aws.ToString(hk.FingerprintSHA256) != colonHex(sum[:]) || !hk.NotValidAfter.Equal(notAfter) {
		t.Errorf("got host key %s %s not after %v, want x509-cert %s %v", aws.ToString(hk.Algorithm), aws.ToString(hk.FingerprintSHA256), hk.NotValidAfter, colonHex(sum[:]), notAfter)
	}

	out, err = client.GetInstanceAccessDetails(t.Context(), &lightsail.GetInstanceAccessDetailsInput{InstanceName: aws.String("win-2"), Protocol: types.InstanceAccessProtocolRdp})
	if err != nil {
		t.Fatal(err)
	}
	if ad := out.AccessDetails; aws.ToString(ad.Password) != "" || aws.ToString(ad.PasswordData.Ciphertext) != ct || aws.ToString(ad.PasswordData.KeyPairName) != "mine" {
		t.Errorf("custom key pair: got password %q, passwordData %+v; want only the ciphertext", aws.ToString(ad.Password), ad.PasswordData)
	}

	_, err = client.GetInstanceAccessDetails(t.Context(), &lightsail.GetInstanceAccessDetailsInput{InstanceName: aws.String("win-1"), Protocol: types.InstanceAccessProtocolSsh})
	if !isInvalidInput(err) {
		t.Errorf("ssh to a Windows instance: got %v, want InvalidInputException", err)
	}
}
