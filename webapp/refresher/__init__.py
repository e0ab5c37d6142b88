"""The refresher: the only part of Taskdeck that talks to upstreams."""
