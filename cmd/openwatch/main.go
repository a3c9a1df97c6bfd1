// Command openwatch applies the appliance's schema migrations and makes and
// restores restore points. See internal/cli.
package main

import (
	"os"

	"github.com/openwatch/openwatch/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
