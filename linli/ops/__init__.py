"""Operations: what an installer runs to keep a site going for years (provisioning, device
lifecycle, backups, watchdog, personal-data retention). Each module has a `main(argv)`."""
