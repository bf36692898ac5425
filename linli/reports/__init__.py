"""Reports for the people who run the community: the monthly report for the three-party meeting."""
