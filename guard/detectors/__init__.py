"""Detector layers. Each module owns one layer; ``base`` holds the Protocols they implement."""
