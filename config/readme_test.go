package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// referenceHeading starts README.md's config reference: a table with one
// row per key, | `key` | default | env | meaning |.
const referenceHeading = "#### Config reference"

// TestREADMEConfigReferenceIsComplete fails when a key Config knows (its
// mapstructure tags) is missing from README.md's config reference, when the
// reference lists a key that does not exist, or when a row names the wrong
// environment variable, so the reference stays the whole truth.
func TestREADMEConfigReferenceIsComplete(t *testing.T) {
	rows := readmeReference(t)
	known := configKeys(reflect.TypeFor[Config](), "")
	for _, k := range known {
		env, ok := rows[k]
		if !ok {
			t.Errorf("README.md's config reference lacks %s: add a row | `%s` | default | %s | meaning |", k, k, envName(k))
			continue
		}
		if env != envName(k) {
			t.Errorf("README.md's config reference: %s has env %q, want %q", k, env, envName(k))
		}
	}
	for k := range rows {
		if !slices.Contains(known, k) {
			t.Errorf("README.md's config reference lists %s, which config does not know: remove the row or fix the key", k)
		}
	}
	// The keys viper gives defaults are keys of the struct too.
	for _, k := range []string{"data_dir", "api.listen", "smtp.security", "smtp.envelope_sender", "smtp.auth", "log.level", "log.format"} {
		if !slices.Contains(known, k) {
			t.Errorf("default key %s is not a key of Config", k)
		}
	}
}

// envName is the environment variable that overrides key, or "—" for the
// entries of the mailboxes list, which viper cannot reach.
func envName(key string) string {
	if strings.HasPrefix(key, "mailboxes[]") {
		return "—"
	}
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// configKeys lists the keys of a config struct type: nested structs as
// dotted paths, list entries as name[].key, squashed structs in place.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		tag := f.Tag.Get("mapstructure")
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "squash" {
			keys = append(keys, configKeys(f.Type, prefix)...)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]():
			keys = append(keys, configKeys(f.Type, key+".")...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(f.Type.Elem(), key+"[].")...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

var referenceRow = regexp.MustCompile("^\\| `([^`]+)` \\|[^|]*\\| ([^|]+?) \\|")

// readmeReference returns the rows of README.md's config reference: key
// to env column.
func readmeReference(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n"+referenceHeading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q section", referenceHeading)
	}
	rows := map[string]string{}
	for line := range strings.SplitSeq(section, "\n") {
		if strings.HasPrefix(line, "#") {
			break
		}
		if m := referenceRow.FindStringSubmatch(line); m != nil {
			if _, dup := rows[m[1]]; dup {
				t.Errorf("README.md's config reference lists %s twice", m[1])
			}
			rows[m[1]] = strings.Trim(m[2], "` ")
		}
	}
	if len(rows) == 0 {
		t.Fatalf("README.md's %q section has no | `key` | default | env | meaning | rows", referenceHeading)
	}
	return rows
}
