"""Pointing the Twilio number at the deployed app: the azd postdeploy hook's command."""
