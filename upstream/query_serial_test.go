package upstream

import "testing"

// TestParseQuerySerial checks the serial console's target names (issue 17
// item 5): a name, an instance id or a name and region, each with the
// .serial suffix; an instance id keeps the serial kind rather than
// becoming an EC2 target.
func TestParseQuerySerial(t *testing.T) {
	tests := []struct {
		typed   string
		want    Query
		wantErr bool
	}{
		{typed: "web-1.serial", want: Query{Name: "web-1", Provider: ProviderSerial}},
		{typed: "i-0123456789abcdef0.serial", want: Query{Name: "i-0123456789abcdef0", Provider: ProviderSerial}},
		{typed: "I-0123456789ABCDEF0.SERIAL", want: Query{Name: "i-0123456789abcdef0", Provider: ProviderSerial}},
		{typed: "web-1.us-east-1.serial", want: Query{Name: "web-1", Provider: ProviderSerial, Region: "us-east-1"}},
		{typed: "i-0123abcd.eu-west-1.serial", want: Query{Name: "i-0123abcd", Provider: ProviderSerial, Region: "eu-west-1"}},
		{typed: "serial", want: Query{Name: "serial"}},
		{typed: ".serial", wantErr: true},
		{typed: "web-1.serial.ec2", want: Query{Name: "web-1.serial", Provider: ProviderEC2}},
		{typed: "-oProxyCommand=x.serial", wantErr: true},
		{typed: "web 1.serial", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.typed, func(t *testing.T) {
			got, err := ParseQuery(tc.typed)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseQuery(%q) = %+v, want an error", tc.typed, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseQuery(%q): %v", tc.typed, err)
			}
			if got != tc.want {
				t.Errorf("ParseQuery(%q) = %+v, want %+v", tc.typed, got, tc.want)
			}
			if again, err := ParseQuery(got.String()); err != nil || again != got {
				t.Errorf("ParseQuery(%q) = %+v, %v; want %+v again", got.String(), again, err, got)
			}
		})
	}
}
