// Package builtin links in the provider kinds the bastion ships, one
// import line each: importing a kind's package registers its constructor
// (package upstream/build). The assembly imports this package.
package builtin

import (
	_ "bastion/upstream/instanceconnect"
	_ "bastion/upstream/lightsail"
	_ "bastion/upstream/serialconsole"
	_ "bastion/upstream/static"
)
