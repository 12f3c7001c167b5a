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
	NameSerial    = "serial"
)

// CapSerialConsole is the policy capability that a login to an EC2 serial
// console needs (config.CapSerialConsole).
const CapSerialConsole = "serial_console"

// SerialPort is the OS user of a serial console target: its serial port,
// the only one AWS offers.
const SerialPort = "port0"

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
		InstanceIDs:         true,
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
	// Serial is the EC2 serial console of the instances of providers.ec2
	// (package upstream/serialconsole): "web-1.serial", logged in to as
	// port0. It has no config section of its own; it is configured by
	// providers.ec2.serial_console and exists whenever providers.ec2 does.
	Serial = Descriptor{
		Name:        NameSerial,
		Dir:         "upstream/serialconsole",
		Regional:    true,
		Lists:       true,
		InstanceIDs: true,
		IAMActions:  []string{"ec2-instance-connect:SendSerialConsoleSSHPublicKey"},
		Capability:  CapSerialConsole,
		OSUsers:     []string{SerialPort},
		Recorded:    true,
	}
)

func init() {
	Register(Lightsail)
	Register(EC2)
	Register(Static)
	Register(Serial)
}
