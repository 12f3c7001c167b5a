package serialconsole

// published are the EC2 Serial Console endpoints and host key fingerprints
// that AWS publishes, per region, in the Amazon EC2 User Guide ("Connect to
// the EC2 Serial Console", table "EC2 Serial Console endpoints and
// fingerprints", as of 2025). They are the built-in defaults: the config's
// providers.ec2.serial_console.endpoint replaces every endpoint, and its
// host_keys replace a region's fingerprints. A region missing here has no
// built-in fingerprint, so its console is refused until the config lists
// one; the endpoint of such a region defaults to DefaultEndpoint.
var published = map[string]endpoint{
	"us-east-2":      {"serial-console.ec2-instance-connect.us-east-2.aws", "SHA256:EhwPkTzRtTY7TRSzz26XbB0/HvV9jRM7mCZN0xw/d/0"},
	"us-east-1":      {"serial-console.ec2-instance-connect.us-east-1.aws", "SHA256:dXwn5ma/xadVMeBZGEru5l2gx+yI5LDiJaLUcz0FMmw"},
	"us-west-1":      {"serial-console.ec2-instance-connect.us-west-1.aws", "SHA256:OHldlcMET8u7QLSX3jmRTRAPFHVtqbyoLZBMUCqiH3Y"},
	"us-west-2":      {"serial-console.ec2-instance-connect.us-west-2.aws", "SHA256:EMCIe23TqKaBI6yGHainqZcMwqNkDhhAVHa1O2JxVUc"},
	"af-south-1":     {"ec2-serial-console.af-south-1.api.aws", "SHA256:RMWWZ2fVePeJUqzjO5jL2KIgXsczoHlz21Ed00biiWI"},
	"ap-east-1":      {"ec2-serial-console.ap-east-1.api.aws", "SHA256:T0Q1lpiXxChoZHplnAkjbP7tkm2xXViC9bJFsjYnifk"},
	"ap-south-2":     {"ec2-serial-console.ap-south-2.api.aws", "SHA256:WJgPBSwV4/shN+OPITValoewAuYj15DVW845JEhDKRs"},
	"ap-southeast-3": {"ec2-serial-console.ap-southeast-3.api.aws", "SHA256:5ZwgrCh+lfns32XITqL/4O0zIfbx4bZgsYFqy3o8mIk"},
	"ap-southeast-5": {"ec2-serial-console.ap-southeast-5.api.aws", "SHA256:cQXTHQMRcqRdIjmAGoAMBSExeoRobYyRwT67yTjnEiA"},
	"ap-southeast-4": {"ec2-serial-console.ap-southeast-4.api.aws", "SHA256:Avaq27hFgLvjn5gTSShZ0oV7h90p0GG46wfOeT6ZJvM"},
	"ap-south-1":     {"serial-console.ec2-instance-connect.ap-south-1.aws", "SHA256:oBLXcYmklqHHEbliARxEgH8IsO51rezTPiSM35BsU40"},
	"ap-northeast-3": {"ec2-serial-console.ap-northeast-3.api.aws", "SHA256:Am0/jiBKBnBuFnHr9aXsgEV3G8Tu/vVHFXE/3UcyjsQ"},
	"ap-northeast-2": {"serial-console.ec2-instance-connect.ap-northeast-2.aws", "SHA256:FoqWXNX+DZ++GuNTztg9PK49WYMqBX+FrcZM2dSrqrI"},
	"ap-southeast-1": {"serial-console.ec2-instance-connect.ap-southeast-1.aws", "SHA256:PLFNn7WnCQDHx3qmwLu1Gy/O8TUX7LQgZuaC6L45CoY"},
	"ap-southeast-2": {"serial-console.ec2-instance-connect.ap-southeast-2.aws", "SHA256:yFvMwUK9lEUQjQTRoXXzuN+cW9/VSe9W984Cf5Tgzo4"},
	"ap-southeast-7": {"ec2-serial-console.ap-southeast-7.api.aws", "SHA256:KCAZiRYrR1Q2lqsg7vTwixWmvc2wmjVT31XRgSdEfDY"},
	"ap-northeast-1": {"serial-console.ec2-instance-connect.ap-northeast-1.aws", "SHA256:RQfsDCZTOfQawewTRDV1t9Em/HMrFQe+CRlIOT5um4k"},
	"ca-central-1":   {"serial-console.ec2-instance-connect.ca-central-1.aws", "SHA256:P2O2jOZwmpMwkpO6YW738FIOTHdUTyEv2gczYMMO7s4"},
	"ca-west-1":      {"ec2-serial-console.ca-west-1.api.aws", "SHA256:s3rc8lI2xhbhr3iedjJNxGAFLPGOLjx7IxxXrGckk6Q"},
	"cn-north-1":     {"ec2-serial-console.cn-north-1.api.amazonwebservices.com.cn", "SHA256:2gHVFy4H7uU3+WaFUxD28v/ggMeqjvSlgngpgLgGT+Y"},
	"cn-northwest-1": {"ec2-serial-console.cn-northwest-1.api.amazonwebservices.com.cn", "SHA256:TdgrNZkiQOdVfYEBUhO4SzUA09VWI5rYOZGTogpwmiM"},
	"eu-central-1":   {"serial-console.ec2-instance-connect.eu-central-1.aws", "SHA256:aCMFS/yIcOdOlkXvOl8AmZ1Toe+bBnrJJ3Fy0k0De2c"},
	"eu-west-1":      {"serial-console.ec2-instance-connect.eu-west-1.aws", "SHA256:h2AaGAWO4Hathhtm6ezs3Bj7udgUxi2qTrHjZAwCW6E"},
	"eu-west-2":      {"serial-console.ec2-instance-connect.eu-west-2.aws", "SHA256:a69rd5CE/AEG4Amm53I6lkD1ZPvS/BCV3tTPW2RnJg8"},
	"eu-south-1":     {"ec2-serial-console.eu-south-1.api.aws", "SHA256:lC0kOVJnpgFyBVrxn0A7n99ecLbXSX95cuuS7X7QK30"},
	"eu-west-3":      {"serial-console.ec2-instance-connect.eu-west-3.aws", "SHA256:q8ldnAf9pymeNe8BnFVngY3RPAr/kxswJUzfrlxeEWs"},
	"eu-south-2":     {"ec2-serial-console.eu-south-2.api.aws", "SHA256:GoCW2DFRlu669QNxqFxEcsR6fZUz/4F4n7T45ZcwoEc"},
	"eu-north-1":     {"serial-console.ec2-instance-connect.eu-north-1.aws", "SHA256:tkGFFUVUDvocDiGSS3Cu8Gdl6w2uI32EPNpKFKLwX84"},
	"eu-central-2":   {"ec2-serial-console.eu-central-2.api.aws", "SHA256:8Ppx2mBMf6WdCw0NUlzKfwM4/IfRz4OaXFutQXWp6mk"},
	"il-central-1":   {"ec2-serial-console.il-central-1.api.aws", "SHA256:JR6q8v6kNNPi8+QSFQ4dj5dimNmZPTgwgsM1SNvtYyU"},
	"mx-central-1":   {"ec2-serial-console.mx-central-1.api.aws", "SHA256:BCuVl13iQNk+CcVnt18Ef4p2ZHUrBBAOxlFetB32GS0"},
	"me-south-1":     {"ec2-serial-console.me-south-1.api.aws", "SHA256:nPjLLKHu2QnLdUq2kVArsoK5xvPJOMRJKCBzCDqC3k8"},
	"me-central-1":   {"ec2-serial-console.me-central-1.api.aws", "SHA256:zpb5duKiBZ+l0dFwPeyykB4MPBYhI/XzXNeFSDKBvLE"},
	"sa-east-1":      {"serial-console.ec2-instance-connect.sa-east-1.aws", "SHA256:rd2+/32Ognjew1yVIemENaQzC+Botbih62OqAPDq1dI"},
	"us-gov-east-1":  {"serial-console.ec2-instance-connect.us-gov-east-1.amazonaws.com", "SHA256:tIwe19GWsoyLClrtvu38YEEh+DHIkqnDcZnmtebvF28"},
	"us-gov-west-1":  {"serial-console.ec2-instance-connect.us-gov-west-1.amazonaws.com", "SHA256:kfOFRWLaOZfB+utbd3bRf8OlPf8nGO2YZLqXZiIw5DQ"},
}

// endpoint is one region's published serial console endpoint.
type endpoint struct {
	// host is the endpoint's DNS name; the port is 22.
	host string
	// fingerprint is the SHA256 fingerprint of its host key.
	fingerprint string
}
