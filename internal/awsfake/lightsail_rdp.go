package awsfake

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"time"
)

// LightsailWindows makes a LightsailInstance a Windows Server instance:
// GetInstanceAccessDetails serves protocol rdp for it (and refuses ssh),
// and GetInstance reports a Windows blueprint with port 3389 open.
type LightsailWindows struct {
	// Certificates are the DER certificates of the instance's RDP server,
	// reported as x509-cert host keys. Tests give the certificate their
	// RDP server really presents.
	Certificates [][]byte
	// Password is the Administrator password, returned in plain text as
	// for an instance created with the default key pair. Empty (with no
	// PasswordCiphertext) is a password that is not ready yet.
	Password string
	// KeyPairName is the custom key pair the instance was created with;
	// with it, the password is returned only as PasswordCiphertext.
	KeyPairName string
	// PasswordCiphertext is the password encrypted to KeyPairName's
	// public key (EncryptWindowsPassword).
	PasswordCiphertext string
}

// windowsUser is the user Lightsail issues RDP credentials for.
const windowsUser = "Administrator"

// EncryptWindowsPassword encrypts password as EC2 GetPasswordData and
// Lightsail's passwordData do: RSA PKCS #1 v1.5 with the key pair's public
// key, base64.
func EncryptWindowsPassword(pub *rsa.PublicKey, password string) (string, error) {
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, []byte(password))
	if err != nil {
		return "", fmt.Errorf("encrypting password: %w", err)
	}
	return base64.StdEncoding.EncodeToString(ct), nil
}

type lsPasswordData struct {
	Ciphertext  string `json:"ciphertext"`
	KeyPairName string `json:"keyPairName"`
}

type lsRDPAccessDetails struct {
	HostKeys     []lsHostKey     `json:"hostKeys"`
	InstanceName string          `json:"instanceName"`
	IPAddress    string          `json:"ipAddress,omitempty"`
	Password     string          `json:"password"`
	PasswordData *lsPasswordData `json:"passwordData,omitempty"`
	Protocol     string          `json:"protocol"`
	Username     string          `json:"username"`
}

// rdpAccessDetails answers GetInstanceAccessDetails with protocol rdp, as
// Lightsail does for a Windows instance: the password (in plain text for
// the default key pair, else only as passwordData) and the RDP
// certificates among hostKeys.
func (s *Server) rdpAccessDetails(e lightsailEntry) (any, error) {
	w := e.in.Windows
	if w == nil {
		return nil, lightsailInvalidInput("The instance %s does not support RDP access", e.in.Name)
	}
	hostKeys := make([]lsHostKey, 0, len(w.Certificates))
	for _, der := range w.Certificates {
		hk, err := certificateJSON(der, e.createdAt)
		if err != nil {
			return nil, err
		}
		hostKeys = append(hostKeys, hk)
	}
	out := lsRDPAccessDetails{
		HostKeys:     hostKeys,
		InstanceName: e.in.Name,
		IPAddress:    e.in.PublicIP,
		Protocol:     "rdp",
		Username:     e.in.Username,
	}
	keyPair := w.KeyPairName
	if keyPair == "" {
		keyPair = "LightsailDefaultKeyPair"
		out.Password = w.Password
	}
	out.PasswordData = &lsPasswordData{Ciphertext: w.PasswordCiphertext, KeyPairName: keyPair}
	return map[string]any{"accessDetails": out}, nil
}

// certificateJSON describes an RDP certificate as Lightsail's
// HostKeyAttributes: algorithm x509-cert, the certificate in publicKey,
// colon-hex fingerprints and its validity.
func certificateJSON(der []byte, witnessed time.Time) (lsHostKey, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return lsHostKey{}, fmt.Errorf("parsing rdp certificate: %w", err)
	}
	sum1, sum256 := sha1.Sum(der), sha256.Sum256(der)
	hk := lsHostKey{
		Algorithm:         "x509-cert",
		PublicKey:         base64.StdEncoding.EncodeToString(der),
		WitnessedAt:       epochSeconds{witnessed},
		FingerprintSHA1:   colonHex(sum1[:]),
		FingerprintSHA256: colonHex(sum256[:]),
		NotValidBefore:    epochSeconds{cert.NotBefore},
		NotValidAfter:     epochSeconds{cert.NotAfter},
	}
	return hk, nil
}

// windowsJSON makes v, an instance's description, that of a Windows
// Server instance, as Lightsail reports one.
func windowsJSON(v *lsInstance) {
	v.BlueprintID, v.BlueprintName = "windows_server_2022", "Windows Server 2022"
	v.BundleID = "small_win_3_0"
	v.Hardware = lsHardware{CPUCount: 1, RAMSizeInGb: 2}
	v.Networking.Ports = []lsPort{{
		FromPort: 3389, ToPort: 3389, Protocol: "tcp",
		AccessFrom: "Anywhere (0.0.0.0/0)", AccessType: "public", AccessDirection: "inbound",
		Cidrs: []string{"0.0.0.0/0"},
	}}
	v.SSHKeyName = ""
}
