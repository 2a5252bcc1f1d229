# Outbound email: only to real customer domains, and never in bulk.
package bastion.support.outbound

import rego.v1

deny contains msg if {
	some domain in data.blocked_domains
	endswith(lower(input.args.to), domain)
	msg := sprintf("email to %s is blocked: %s is not a customer domain", [input.args.to, domain])
}

escalate contains msg if {
	count(input.args.body) > data.max_email_chars
	msg := sprintf("the email is %d characters long (over %d); a human should read it first", [count(input.args.body), data.max_email_chars])
}
