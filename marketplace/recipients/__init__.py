"""Recipients (服务对象): eligible residents, identified without ever storing their ID number."""
