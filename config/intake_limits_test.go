package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestIntakeLimitsDefaultsEnvAndValidation(t *testing.T) {
	c, err := Load(writeGood(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Intake.AckLimitPerRecipient != DefaultAckLimitPerRecipient || c.Intake.AckLimitGlobal != DefaultAckLimitGlobal || c.Intake.MaxReceived != DefaultMaxReceived {
		t.Fatalf("intake limits %+v, want the defaults", c.Intake)
	}

	t.Setenv("CASEINTAKE_INTAKE_ACK_LIMIT_GLOBAL", "7")
	if c, err = Load(writeGood(t)); err != nil || c.Intake.AckLimitGlobal != 7 {
		t.Fatalf("env override: %v, ack_limit_global %d", err, c.Intake.AckLimitGlobal)
	}
	os.Unsetenv("CASEINTAKE_INTAKE_ACK_LIMIT_GLOBAL")

	path := writeGood(t)
	b, _ := os.ReadFile(path)
	bad := string(b) + "intake:\n  ack_limit_per_recipient: -1\n  max_received: -5\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("negative limits accepted: %v", err)
	}
	all := strings.Join(cerr.Problems, "\n")
	for _, key := range []string{"intake.ack_limit_per_recipient", "intake.max_received"} {
		if !strings.Contains(all, key) {
			t.Errorf("problems do not name %s:\n%s", key, all)
		}
	}
}
