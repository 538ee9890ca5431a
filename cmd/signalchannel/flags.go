package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// envName is the environment twin of a flag: -max-streams is
// SIGNALCHANNEL_MAX_STREAMS.
func envName(flagName string) string {
	return "SIGNALCHANNEL_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment twin, if that is set.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v, ok := lookup(envName(f.Name)); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %v", envName(f.Name), v, serr)
			}
		}
	})
	return err
}

// addEnvToUsage appends the environment twin to each flag's usage text.
func addEnvToUsage(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " (env " + envName(f.Name) + ")" })
}

var osLookupEnv = os.LookupEnv

// parseArgs parses a command's flags. With -h it prints them all to
// stderr and returns flag.ErrHelp; a bad flag is one line naming it and
// where the flags are told, not the whole list.
func parseArgs(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stderr)
		fmt.Fprintf(stderr, "Usage of signalchannel %s:\n", fs.Name())
		fs.PrintDefaults()
		return err
	default:
		return fmt.Errorf("%v (run \"signalchannel %s -h\" for its flags)", err, fs.Name())
	}
}
