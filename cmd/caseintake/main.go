// Command caseintake turns a support mailbox into support cases: the daemon
// (serve), a configuration doctor (check), the agents' case commands, a
// message trace and a self-contained demo.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/caseintake/caseintake/config"
)

// Exit codes.
const (
	exitFailure   = 1
	exitBadConfig = 2 // systemd: RestartPreventExitStatus=2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := newRoot().ExecuteContext(ctx)
	if err == nil {
		return
	}
	var cerr *config.Error
	if errors.As(err, &cerr) {
		fmt.Fprintf(os.Stderr, "caseintake: config %s:\n", cerr.File)
		for _, p := range cerr.Problems {
			fmt.Fprintln(os.Stderr, "  "+p)
		}
		os.Exit(exitBadConfig)
	}
	fmt.Fprintln(os.Stderr, "caseintake:", err)
	os.Exit(exitFailure)
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "caseintake",
		Short:         "Turn a support mailbox into support cases",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringP("config", "c", defaultConfigPath(), "config file (env CASEINTAKE_CONFIG)")
	root.AddCommand(newServeCmd(), newCheckCmd(), newCasesCmd(), newTraceCmd(), newBackupCmd(), newQuarantineCmd(), newDemoCmd())
	return root
}

func defaultConfigPath() string {
	if p := os.Getenv("CASEINTAKE_CONFIG"); p != "" {
		return p
	}
	return "/etc/caseintake/caseintake.yaml"
}

func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	path, _ := cmd.Flags().GetString("config")
	return config.Load(path)
}
