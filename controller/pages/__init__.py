"""Server-rendered HTML pages of the control room (see `controller.pages.routes`)."""
