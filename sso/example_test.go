package sso_test

import (
	"fmt"

	"bastion/sso"
)

func ExampleRefusal_Message() {
	for _, r := range []*sso.Refusal{
		{Label: sso.LabelDenied},
		{Label: sso.LabelInvalidToken, Reason: "wrong audience"},
		{Label: sso.LabelDomain, Reason: "the email domain evil.example is not allowed here"},
	} {
		fmt.Println(r.Message())
	}
	// Output:
	// bastion: login refused: the identity provider denied the request
	// bastion: login refused: the identity provider's token was not valid (wrong audience)
	// bastion: login refused: the email domain evil.example is not allowed here
}

func ExampleValidUsername() {
	fmt.Println(sso.ValidUsername("alice"), sso.ValidUsername("alice@example.com"), sso.ValidUsername("alice+web-1"), sso.ValidUsername("a b"))
	// Output: true true false false
}
