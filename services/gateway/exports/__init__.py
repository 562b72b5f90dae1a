"""A person's export (issue 23, docs/data-rights.md "Export"): everything Kizuna holds about them, gathered from
identity and from every service in every community they belong to, as JSON and as a readable document, by a
background job whose progress they can watch."""
