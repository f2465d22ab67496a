"""The providers domain's use cases, one module per job.

- `registry`: registering providers and reading them as each viewer may see them (ProviderProfile);
- `qualification`: approval, suspension, reinstatement and revocation (资质), with their history;
- `enrolment`: admitting approved providers to programmes;
- `ratings`: recording ratings, the running totals and the Bayesian score;
- `ranking`: providers of a service ranked by satisfaction (优胜劣汰);
- `complaints`: filing, reading and resolving complaints.
"""
