# Refund limits per tenant: large refunds need a human, nonsense refunds never run.
package bastion.support.refunds

import rego.v1

limit := data.tenants[input.tenant].refund_limit

deny contains msg if {
	not data.tenants[input.tenant]
	msg := sprintf("tenant %q has no refund limit in the policy data, so refunds are refused", [input.tenant])
}

deny contains msg if {
	input.args.amount <= 0
	msg := sprintf("a refund must be a positive amount, got %v", [input.args.amount])
}

escalate contains msg if {
	input.args.amount > limit
	msg := sprintf("refund of $%v is over tenant %s's limit of $%v", [input.args.amount, input.tenant, limit])
}

escalate contains msg if {
	input.confidence != null
	input.confidence < data.tenants[input.tenant].min_refund_confidence
	msg := sprintf("the agent is only %v confident in this refund", [input.confidence])
}
