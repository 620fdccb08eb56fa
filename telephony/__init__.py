"""Twilio voice and SMS on Azure Functions."""
