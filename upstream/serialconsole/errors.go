package serialconsole

import (
	"errors"

	"bastion/upstream"
	"bastion/upstream/awsutil"
)

// awsSentences are the errors of SendSerialConsoleSSHPublicKey that a person
// can act on, with the text AWS documents for each (EC2 Instance Connect API
// Reference, SendSerialConsoleSSHPublicKey, "Errors"). The person sees the
// sentence and the code on one line; the message AWS sent goes to the log.
var awsSentences = map[string]string{
	"SerialConsoleAccessDisabledException":       "Your account is not authorized to use the EC2 Serial Console. To authorize your account, run the EnableSerialConsoleAccess API.",
	"EC2InstanceTypeInvalidException":            "The instance type is not supported for connecting via the serial console. Only Nitro instance types are currently supported.",
	"SerialConsoleSessionLimitExceededException": "The instance currently has 1 active serial console session. Only 1 session is supported at a time.",
	"SerialConsoleSessionUnavailableException":   "Unable to start a serial console session. Please try again.",
	"SerialConsoleSessionUnsupportedException":   "Your instance's BIOS version is not supported for serial console connection. Reboot your instance to update the BIOS, and then try again.",
	"ThrottlingException":                        "The requests were made too frequently and have been throttled. Wait a while and try again.",
	"EC2InstanceStateInvalidException":           "Unable to connect because the instance is not in a valid state. Connecting to a stopped or terminated instance is not supported.",
	"EC2InstanceNotFoundException":               "The specified instance was not found.",
	"EC2InstanceUnavailableException":            "The instance is currently unavailable. Wait a few minutes and try again.",
	"AuthException":                              "Either your AWS credentials are not valid or you do not have access to the EC2 instance.",
}

// publicError returns err, an *upstream.Error from awsutil.Do, with its
// public sentence replaced by AWS's documented text when its code is one a
// person can act on: "EC2 serial console: The instance currently has 1
// active serial console session. Only 1 session is supported at a time.
// (SerialConsoleSessionLimitExceededException)".
func publicError(err error) error {
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return err
	}
	code := awsutil.ErrorCode(err)
	s, ok := awsSentences[code]
	if !ok {
		return err
	}
	out := *ue
	out.Public = "EC2 serial console: " + s + " (" + code + ")"
	return &out
}
