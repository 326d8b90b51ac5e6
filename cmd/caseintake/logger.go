package main

import (
	"log/slog"
	"os"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/logging"
)

// newLogger builds the daemon's structured logger: JSON unless stderr is a
// terminal (or the config says otherwise), with repeated identical errors
// rate-limited (logging.Handler). flush logs the summaries of what is
// still being suppressed; call it before exiting.
func newLogger(c config.Log, w *os.File) (log *slog.Logger, flush func()) {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "auto" || format == "" {
		format = "json"
		if fi, err := w.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			format = "text"
		}
	}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	limited := logging.NewHandler(h, logging.DefaultWindow)
	return slog.New(limited), limited.Flush
}
