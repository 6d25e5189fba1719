package bus

// HasInterest reports whether any client of the cluster, on this server or
// another one, subscribes to a subject matching the literal subject in the
// application account. Subscriptions on other servers count once their
// route has announced them (a few milliseconds after they are made), so a
// publisher that skips work when HasInterest is false may miss what is
// published in that moment; it is meant for best-effort feeds such as the
// change feed. It is a lookup in the server's subscription index: no
// message is sent.
func (b *Bus) HasInterest(subject string) bool {
	acc, err := b.srv.LookupAccount(AppAccount)
	if err != nil {
		return false
	}
	return acc.SubscriptionInterest(subject)
}
