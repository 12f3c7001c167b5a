package provider

import "time"

// Address choices of the AWS kinds.
const (
	AddressPublic  = "public"
	AddressPrivate = "private"
)

// Defaults the AWS kinds share.
const (
	DefaultPort         = 22
	DefaultResolveCache = 30 * time.Second
)

// Names of the built-in kinds, for switch statements and constants.
const (
	NameLightsail = "lightsail"
	NameEC2       = "ec2"
	NameStatic    = "static"
)

// The provider kinds built in, one registration each. Their order is the
// order of every list the registry gives (error messages, ssh-config).
var (
	// Lightsail is Amazon Lightsail (package upstream/lightsail).
	Lightsail = Descriptor{
		Name:                NameLightsail,
		Dir:                 "upstream/lightsail",
		Regional:            true,
		Lists:               true,
		IAMActions:          []string{"lightsail:GetInstance", "lightsail:GetInstanceAccessDetails", "lightsail:GetInstances"},
		DefaultAddress:      AddressPublic,
		DefaultPort:         DefaultPort,
		DefaultResolveCache: DefaultResolveCache,
	}
	// EC2 is Amazon EC2 through EC2 Instance Connect (package
	// upstream/instanceconnect).
	EC2 = Descriptor{
		Name:                NameEC2,
		Dir:                 "upstream/instanceconnect",
		Regional:            true,
		Lists:               true,
		IAMActions:          []string{"ec2:DescribeInstances", "ec2:GetConsoleOutput", "ec2-instance-connect:SendSSHPublicKey"},
		DefaultAddress:      AddressPrivate,
		DefaultPort:         DefaultPort,
		DefaultResolveCache: DefaultResolveCache,
	}
	// Static is hosts named in the config (package upstream/static).
	Static = Descriptor{
		Name:  NameStatic,
		Dir:   "upstream/static",
		Lists: true,
	}
)

func init() {
	Register(Lightsail)
	Register(EC2)
	Register(Static)
}
