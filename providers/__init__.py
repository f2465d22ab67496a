"""The supply side: provider registry, qualification, programme enrolment (ratings and ranking later)."""
