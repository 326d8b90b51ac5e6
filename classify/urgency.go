package classify

import (
	"strings"
	"unicode"
)

// DefaultUrgentPhrases lists the "production down" phrases support desks see
// in subjects, in English, German, Portuguese, Spanish, French, Polish,
// Italian and Dutch, with common spelling variants. Matching folds case,
// diacritics, punctuation and white space, so "Produção parada" also covers
// "PRODUCAO PARADA" and "produção-parada"; variants are listed only where the
// words differ. The slice is a fresh copy on every call.
func DefaultUrgentPhrases() []string {
	return []string{
		// English
		"Production down", "Prod down", "Production is down", "Prod is down",
		"Production outage", "Prod outage", "Outage in production", "Down in production",
		"Production stopped", "Production halted", "Production stoppage", "Production standstill",
		"Production offline", "Production not working", "Production unavailable",
		"Production system down", "Production server down", "Production environment down",
		"Production site down", "Production line down", "Production line stopped",
		// German
		"Produktionsausfall", "Produktion ausgefallen", "Produktion steht", "Produktionsstillstand",
		"Produktionsstörung", "Produktion gestoppt", "Produktion down", "Produktion läuft nicht",
		"Ausfall Produktion", "Ausfall der Produktion", "Stillstand Produktion", "Stillstand der Produktion",
		"Produktivsystem ausgefallen", "Produktivsystem down", "Produktivsystem steht",
		"Produktionssystem ausgefallen", "Produktionssystem down", "Produktionsumgebung ausgefallen",
		"Produktionsumgebung down",
		// Portuguese
		"Produção parada", "Produção fora do ar", "Produção caiu", "Produção caída",
		"Produção indisponível", "Produção inoperante", "Produção travada",
		"Parada de produção", "Parada na produção", "Ambiente de produção fora do ar",
		"Ambiente de produção parado", "Sistema de produção parado",
		// Spanish
		"Producción caída", "Producción parada", "Producción detenida", "Producción caida",
		"Producción fuera de servicio", "Producción sin servicio", "Producción no funciona",
		"Caída de producción", "Caída en producción", "Parada de producción", "Paro de producción",
		"Ambiente de producción caído", "Entorno de producción caído",
		// French
		"Production arrêtée", "Production en panne", "Arrêt de production", "Production à l'arrêt",
		"Production bloquée", "Production hors service", "Production HS", "Production indisponible",
		"Panne de production", "Panne en production", "Prod en panne", "Prod HS",
		"Production interrompue", "Interruption de production",
		// Polish
		"Produkcja stoi", "Awaria produkcji", "Produkcja zatrzymana", "Przestój produkcji",
		"Zatrzymanie produkcji", "Produkcja nie działa", "Awaria na produkcji", "Produkcja leży",
		"Produkcja wstrzymana",
		// Italian
		"Produzione ferma", "Produzione bloccata", "Produzione down", "Produzione interrotta",
		"Produzione non funziona", "Produzione KO", "Fermo produzione", "Blocco produzione",
		"Blocco della produzione", "Produzione in blocco", "Ambiente di produzione down",
		// Dutch
		"Productie ligt plat", "Productie down", "Productiestoring", "Productie plat",
		"Productie gestopt", "Productie ligt stil", "Productiestilstand", "Storing productie",
		"Storing in productie", "Productie werkt niet", "Productieomgeving down", "Productieomgeving plat",
		"Uitval productie", "Productie-uitval",
	}
}

// Urgency matches urgent phrases against subjects. It is read-only after
// NewUrgency and safe for concurrent use. The zero value and nil match
// nothing.
type Urgency struct {
	phrases []urgentPhrase
	// byFirst lists, for each first word, the phrases starting with it in
	// configuration order: a subject is looked up a word at a time
	// instead of searched for each of the ~120 default phrases (6 µs a
	// subject, 2 % of the daemon's CPU in a drain).
	byFirst map[string][]int
}

type urgentPhrase struct {
	given string // as configured, for reporting
	// inner is the phrase as matched: Fold, then words joined by single
	// spaces, between two spaces. Made once: built for every phrase of
	// every subject matched, it was a hundred allocations a message.
	inner string
}

// NewUrgency prepares phrases for Match. Each phrase is folded the way
// subjects are (Fold) and reduced to its words: punctuation separates words
// like white space, so "production-down" and "production down" are the same
// phrase. Phrases with no word left, and repeats, are ignored.
func NewUrgency(phrases []string) *Urgency {
	u := &Urgency{byFirst: map[string][]int{}}
	seen := map[string]bool{}
	for _, p := range phrases {
		t := words(Fold(p))
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		first, _, _ := strings.Cut(t, " ")
		u.byFirst[first] = append(u.byFirst[first], len(u.phrases))
		u.phrases = append(u.phrases, urgentPhrase{given: p, inner: " " + t + " "})
	}
	return u
}

// Match reports the first configured phrase (in configuration order, as
// given, unfolded) found in subject. The subject should be decoded already
// (pass Message.Subject); Match strips reply prefixes and gateway tags
// (StripReplyPrefixes), folds it (Fold) and compares whole words: the
// phrase must start and end at word boundaries, so "downtime" and
// "productiondownload" do not match "production down", and "Produktion
// steht still" matches "Produktion steht". Negation is not understood:
// "no production down expected" matches; raising a case to urgent wrongly is
// the cheaper mistake, and agents can lower it.
func (u *Urgency) Match(subject string) (phrase string, ok bool) {
	if u == nil || len(u.phrases) == 0 {
		return "", false
	}
	s := " " + words(Fold(StripReplyPrefixes(subject))) + " "
	best := len(u.phrases)
	// s is words between single spaces; at is the space before a word.
	for at := 0; at < len(s)-1; {
		next := at + 1 + strings.IndexByte(s[at+1:], ' ')
		for _, k := range u.byFirst[s[at+1:next]] {
			if k >= best {
				break
			}
			if strings.HasPrefix(s[at:], u.phrases[k].inner) {
				best = k
				break
			}
		}
		at = next
	}
	if best == len(u.phrases) {
		return "", false
	}
	return u.phrases[best].given, true
}

// words keeps the letters, digits and marks of s, turning every other run of
// characters into one space.
func words(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) {
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteRune(r)
			continue
		}
		space = true
	}
	return b.String()
}
