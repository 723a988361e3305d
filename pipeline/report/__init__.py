"""What a run tells a person: report.json/md, contact sheets, shot strips."""
