"""Running a student's notebook: the sandbox, its limits, the kernel, the device, what comes back."""
